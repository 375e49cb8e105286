"""Where in a document Presidio's default recognizers can possibly find something, so that
Presidio runs on those windows only and still returns exactly what it returns on the
whole document.

Written against presidio-analyzer 2.2.366 with phonenumbers 9.0.43 (regions US GB DE FR
IL IN CA BR, leniency VALID) and a blank spaCy pipeline, for EMAIL_ADDRESS, PHONE_NUMBER,
IP_ADDRESS, CREDIT_CARD, IBAN_CODE and US_SSN:

* ``ANCHOR`` matches inside every span those recognizers can return (a superset, checked
  by fuzzing every recognizer's patterns and phonenumbers' example numbers).
* A window runs from the nearest *safe cut* before a hit to the nearest one after it.
  A hard cut is a line break or other whitespace no candidate may contain (space, TAB,
  NBSP and U+3000 may); phonenumbers treats it as a text boundary. A soft cut, inside a
  long line, is before a letter that follows whitespace, is not ``x`` (phone punctuation)
  or ``a``/``e``/``i`` (extension words), and has no IBAN start (two letters, two digits)
  in the 46 characters before it. No candidate of any recognizer crosses a safe cut, so
  the text between two cuts is analyzed exactly as it is within the document.
* With a blank spaCy pipeline every lemma is empty, so context words never change a
  score, and the windows need no context margin. The extended recognizers' context rules
  (``pipeline.stages.pii.recognizers``) run on whole documents, after the windows' results
  are mapped back, as Presidio's context enhancer runs after its recognizers.

Windows of many documents are joined with ``\\n`` (a hard cut) into one Presidio call,
which gives the same results as separate calls and amortizes Presidio's per-call cost.
``tests/test_pii.py`` holds windowed results equal to whole-document results; re-run it
when presidio-analyzer or phonenumbers is upgraded.
"""

from __future__ import annotations

import functools
import re

WINDOWED_ENTITIES = frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"})

# phonenumbers' valid punctuation (9.0.43) plus X: the gap allowed between a phone's digit blocks.
_PUNCT = (
    "\\-xX\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000()\uff08\uff09\uff3b\uff3d"
    ".\\[\\]/~\u2053\u223c\uff5e"
)
_GAP = "[" + _PUNCT + "]{0,4}"
_HEX = "[0-9a-fA-F]"
# One anchor per entity: every span a recognizer returns contains a match of its entity's anchor.
_ENTITY_ANCHORS = {
    "EMAIL_ADDRESS": r"@(?<=[^\s@]@)[^\s@.]+\.[^\s.]",  # local char, @, label, dot
    "IP_ADDRESS": (
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"  # IPv4, IPv4-mapped, -embedded
        r"|::|:(?:" + _HEX + r"{1,4}:){5}" + _HEX
    ),  # IPv6: compressed '::' or 7 colons
    "CREDIT_CARD": r"\d(?:[\- ]?\d){11}",  # 12+ digits (13+ for Presidio's recognizer)
    "US_SSN": r"[0-9]{3}[\- .]?[0-9]{2}[\- .]?[0-9]{4}",  # every SSN pattern
    "IBAN_CODE": r"[0-9](?<=[^\W\d_]{2}[0-9])[0-9](?:[ \-]?[^\W_]{4}){2}",  # 2 letters, 2 digits, 2 groups of 4
    "PHONE_NUMBER": (
        r"\d(?:" + _GAP + r"\d){5}"  # 6+ digits,
        r"|0(?:" + _GAP + r"\d){3}"  # or 4-5 with trunk prefix 0,
        r"|1" + _GAP + "6" + _GAP + "[4689]" + _GAP + r"\d"  # or German 164x/168x/169x,
        r"|\d(?<![0-9])"
    ),  # or any non-ASCII digit
}
# The lookahead guard makes CPython's scan about 10x faster.
ANCHOR = re.compile(r"(?=[\d@:])(?:" + "|".join(f"(?:{b})" for b in _ENTITY_ANCHORS.values()) + ")")
ENTITY_ANCHORS = {entity: re.compile(pattern) for entity, pattern in _ENTITY_ANCHORS.items()}


@functools.cache
def _reaches_parse():
    # pii.phone imports Presidio: loaded on first use, where PII runs, not with the spec
    from pipeline.stages.pii.phone import reaches_parse

    return reaches_parse


@functools.cache
def _phone_shaped():
    from pipeline.stages.pii.recognizers import phone_shaped

    return phone_shaped


def entities_in(text: str, start: int, end: int, extended: bool = False) -> frozenset[str]:
    """The entities whose anchor matches in text[start:end]: the only ones Presidio can find
    in that window (each entity's recognizers are independent of the others'). Phone
    numbers also need a candidate that phonenumbers would parse (most dates and times
    have none) or, with the ``extended`` recognizers, a phone-shaped digit run."""
    found = [e for e, anchor in ENTITY_ANCHORS.items() if anchor.search(text, start, end)]
    if "PHONE_NUMBER" in found:
        piece = text[start:end]
        if not _reaches_parse()(piece) and not (extended and _phone_shaped()(piece)):
            found.remove("PHONE_NUMBER")
    return frozenset(found)


# RE2 forms (pyarrow.compute) of the anchors whose Python form has no lookbehind; [0-9]
# stands for Python's \d (documents with other digits are handled apart, below).
_RE2_SHARED = [
    r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]|::|:(?:" + _HEX + r"{1,4}:){5}" + _HEX,  # IP
    r"[0-9](?:[\- ]?[0-9]){11}",  # card
    r"[0-9]{3}[\- .]?[0-9]{2}[\- .]?[0-9]{4}",  # SSN
    r"[0-9](?:" + _GAP + r"[0-9]){5}|0(?:" + _GAP + r"[0-9]){3}|1" + _GAP + "6" + _GAP + "[4689]" + _GAP + "[0-9]",
]

# The anchors for RE2, without lookbehinds and each at least as broad as its Python form.
# It decides, for a whole batch in C++, which documents need the Python scan at all; most
# have no candidate. pyarrow compiles the pattern on every call, so it is written to
# compile fast: negated classes instead of Unicode letter classes. The last branch takes
# every document with a non-ASCII digit.
PREFILTER_RE2 = "|".join(
    [
        r"[^\s@]@[^\s@.]+\.[^\s.]",  # email, with the local character before @
        *_RE2_SHARED,
        r"[^\s0-9]{2}[0-9]{2}(?:[ \-]?[^\s\-]{4}){2}",  # IBAN, with its two letters
        r"[^\P{Nd}0-9]",
    ]
)


def may_hold_pii(texts) -> list[bool]:
    """Per document, whether ANCHOR can match anywhere in it (RE2, vectorized); a superset."""
    import pyarrow.compute as pc

    return pc.match_substring_regex(texts, PREFILTER_RE2).to_pylist()


# Where ANCHOR's hits are, found by RE2 for a whole batch. Each branch matches wherever its
# Python anchor matches, from the same position or (IBAN) up to two characters before it, so
# RE2's leftmost, non-overlapping scan starts a match at every hit, or is inside one there,
# or ends one right there. The email branch drops the character its Python form looks behind
# for. The IBAN branch keeps one or two of the characters before the digits (the Python form
# wants two letters there): without them every day of the month before a word ("12 February")
# was a hit. At most one of those two letters is ever taken by the match before (the email
# and IPv6 branches end in one character after "." or ":"; an IBAN group ends in any four),
# unless that match ends where the hit starts. Documents with a non-ASCII digit, or with the
# marker character (NUL), are scanned in Python instead.
HITS_RE2 = "|".join(
    [
        r"@[^\s@.]+\.[^\s.]",
        *_RE2_SHARED,
        r"[^\s0-9]{1,2}[0-9]{2}(?:[ \-]?[^\s\-]{4}){2}",
    ]
)
_SCAN_IN_PYTHON_RE2 = r"[^\P{Nd}0-9]|\x00"


def anchor_hits(texts) -> list[list[tuple[int, int]] | None]:
    """Per document of a pyarrow string array: [start, end) spans such that every ANCHOR hit
    starts inside one or where one ends; None where only the Python scan is exact.

    RE2 puts a marker character (NUL) before and after each match; splitting at the markers
    leaves the pieces between them, whose lengths in code points give the matches'
    positions in the text. Documents holding a NUL are scanned in Python."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    pieces = pc.split_pattern(pc.replace_substring_regex(texts, HITS_RE2, "\x00\\0\x00"), "\x00")
    offsets = pieces.offsets.to_numpy()
    offsets = offsets - offsets[0]
    lengths = pc.utf8_length(pieces.flatten()).to_numpy(zero_copy_only=False).astype(np.int64)
    piece_starts = np.cumsum(lengths) - lengths
    doc_of_piece = np.repeat(np.arange(len(texts)), np.diff(offsets))
    index_in_doc = np.arange(len(lengths)) - offsets[doc_of_piece]
    is_hit = (index_in_doc % 2) == 1  # pieces alternate: text, match, text, ..., text
    hit_docs = doc_of_piece[is_hit]
    hit_starts = piece_starts[is_hit] - piece_starts[offsets[hit_docs]]
    hit_ends = hit_starts + lengths[is_hit]
    in_python = pc.or_kleene(pc.match_substring_regex(texts, _SCAN_IN_PYTHON_RE2), texts.is_null()).to_pylist()
    out: list[list[tuple[int, int]] | None] = [None if python_only else [] for python_only in in_python]
    for doc, start, end in zip(hit_docs.tolist(), hit_starts.tolist(), hit_ends.tolist()):
        if out[doc] is not None:
            out[doc].append((start, end))
    return out


_HARD = re.compile("[\n\r\v\f\x1c-\x1f\x85\u1680\u2000-\u200a\u2028\u2029\u202f\u205f]")
_SOFT_LETTER = "[b-df-hj-wyzB-DF-HJ-WYZ]"
_SOFT = re.compile(r"(?<=\s)" + _SOFT_LETTER)
_SOFT_LETTERS = frozenset(c for c in map(chr, range(128)) if re.fullmatch(_SOFT_LETTER, c))
_IBAN_START = re.compile(r"[^\W\d_]{2}[0-9]{2}")
_IBAN_REACH = 46


def _soft_ok(text: str, p: int) -> bool:
    return _IBAN_START.search(text, max(0, p - _IBAN_REACH), p) is None


# A safe cut is a hard cut (after a hard character) or a soft one (at its letter); both
# patterns find them in order, the second over the reversed text, nearest first.
_CUT = re.compile(_HARD.pattern + "|" + _SOFT.pattern)
_CUT_REVERSED = re.compile(_HARD.pattern + "|" + _SOFT_LETTER + r"(?=\s)")


def _cut_before(text: str, pos: int, reversed_text: str) -> int:
    """The largest safe cut at or before ``pos``."""
    n = len(text)
    for m in _CUT_REVERSED.finditer(reversed_text, n - 1 - pos):
        r = m.start()
        if reversed_text[r] in _SOFT_LETTERS:
            if _soft_ok(text, n - 1 - r):
                return n - 1 - r
        elif r > n - 1 - pos:  # a hard character at pos itself cuts after pos
            return n - r
    return 0


def _cut_after(text: str, pos: int) -> int:
    """The smallest safe cut at or after ``pos``."""
    for m in _CUT.finditer(text, pos):
        p = m.start()
        if text[p] not in _SOFT_LETTERS or _soft_ok(text, p):
            return p
    return len(text)


def windows(text: str, hits: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Disjoint [start, end) spans, between safe cuts, holding every anchor hit. ``hits``:
    from ``anchor_hits``; without them ANCHOR scans the text. No anchor hit crosses a safe
    cut, and no safe cut falls at a hit's first character (a digit, "@" or ":"), so a window
    around a span that a hit starts in, or ends where a hit starts, holds the whole hit."""
    spans: list[list[int]] = []
    reversed_text = text[::-1]
    for hit_start, hit_end in hits if hits is not None else (m.span() for m in ANCHOR.finditer(text)):
        if spans and hit_start < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], _cut_after(text, hit_end))
            continue
        start, end = _cut_before(text, hit_start, reversed_text), _cut_after(text, hit_end)
        if spans and start < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]
