"""Text normalization for dedup keys, documented so users know what counts as 'the same'."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalize_for_dedup(
    text: str,
    *,
    unicode_nfkc: bool = True,
    lowercase: bool = True,
    collapse_whitespace: bool = True,
    strip_punctuation: bool = False,
) -> str:
    """NFKC, lowercase, punctuation removal and whitespace folding, each optional.

    Applied in that order; whitespace folding also trims both ends.
    """
    if unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = _PUNCTUATION.sub(" ", text)
    if collapse_whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    return text
