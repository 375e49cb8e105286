"""CCNet's text normalization, line by line (the reference) and vectorized (the stage's)."""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

# CCNet's cc_net/text_normalizer.py UNICODE_PUNCT, unchanged.
UNICODE_PUNCT = {
    "，": ",",
    "。": ".",
    "、": ",",
    "„": '"',
    "”": '"',
    "“": '"',
    "«": '"',
    "»": '"',
    "１": '"',
    "」": '"',
    "「": '"',
    "《": '"',
    "》": '"',
    "´": "'",
    "∶": ":",
    "：": ":",
    "？": "?",
    "！": "!",
    "（": "(",
    "）": ")",
    "；": ";",
    "–": "-",
    "—": " - ",
    "．": ". ",
    "～": "~",
    "’": "'",
    "…": "...",
    "━": "-",
    "〈": "<",
    "〉": ">",
    "【": "[",
    "】": "]",
    "％": "%",
    "►": "-",
}
_NON_PRINTING = "[\x00-\x1f\x7f-\x9f]"


def ccnet_normalize(line: str) -> str:
    """CCNet's ``text_normalizer.normalize`` with its defaults, one line at a time. The
    stage runs the same steps vectorized (``normalize_lines``); tests hold them equal."""
    line = line.strip()
    if not line:
        return line
    line = line.lower()
    line = "".join(c for c in unicodedata.normalize("NFD", line) if unicodedata.category(c) != "Mn")
    line = "".join("0" if c.isdecimal() else UNICODE_PUNCT.get(c, c) for c in line)
    return "".join(c for c in line if not (ord(c) < 32 or 127 <= ord(c) < 160))


def normalize_lines(lines: list[str]) -> pa.Array:
    """``ccnet_normalize`` over many lines. Python's own strip and lower run first (lower
    has context rules, such as Greek final sigma, that Arrow's per-character lowercasing
    lacks); the rest runs vectorized in Arrow."""
    out = pa.array([line.strip().lower() for line in lines], pa.string())
    out = pc.replace_substring_regex(pc.utf8_normalize(out, "NFD"), r"\p{Mn}+", "")
    out = pc.replace_substring_regex(out, r"\p{Nd}", "0")
    for char, replacement in UNICODE_PUNCT.items():
        out = pc.replace_substring(out, char, replacement)
    return pc.replace_substring_regex(out, _NON_PRINTING, "")
