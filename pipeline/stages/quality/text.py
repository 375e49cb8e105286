"""What every rule family counts: the tokens, words, lines and paragraphs of a batch of
texts, cut with Arrow compute kernels and flattened into NumPy-indexed ``Pieces``, and the
small helpers the families share. How the cuts compare with datatrove's spaCy tokens:
``docs/quality-rules.md``, "Tokens, lines and paragraphs"."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPACE = r"\s\p{Z}"  # whitespace and separators, for character classes
_SYMBOL = r"\p{P}\p{S}\x00-\x08\x0e-\x1f\x7f-\x9f"  # punctuation, symbols, control characters
# Spaced out to cut text into tokens: punctuation runs, and (kept whole, as spaCy keeps
# them) URLs, numbers with separators such as 1,000.50 or 11/02/2006, and abbreviations
# such as U.S. or e.g.
_TOKEN_SPACING = rf"(?:https?://|www\.)[^{SPACE}]+|\pN+(?:[.,:/]\pN+)+|[A-Za-z]\.(?:[A-Za-z]\.)+|[{_SYMBOL}]+"
_LINE_BREAK = r"\r?\n"
_PARAGRAPH_BREAK = r"(?:\r?\n){2,}"

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


class Pieces:
    """The pieces (tokens, words, lines, paragraphs) of every document of a batch, flattened
    in document order; ``doc`` is the document each piece belongs to."""

    def __init__(self, values: pa.Array, doc: np.ndarray, num_docs: int) -> None:
        self.values = values
        self.doc = doc
        self.num_docs = num_docs

    @classmethod
    def split(cls, texts: pa.Array, pattern: str, num_docs: int) -> Pieces:
        """Cut at every match of the regular expression ``pattern``."""
        return cls.of_lists(pc.split_pattern_regex(texts, pattern), num_docs)

    @classmethod
    def whitespace_words(cls, texts: pa.Array) -> Pieces:
        """As ``str.split()``."""
        return cls.of_lists(pc.utf8_split_whitespace(texts), len(texts))

    @classmethod
    def of_lists(cls, lists: pa.ListArray, num_docs: int) -> Pieces:
        return cls(pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(), num_docs)

    def where(self, mask: np.ndarray) -> Pieces:
        return Pieces(self.values.filter(pa.array(mask)), self.doc[mask], self.num_docs)

    def of_docs(self, kept: np.ndarray) -> Pieces:
        """The pieces of the documents where ``kept``, numbered among those."""
        inside = kept[self.doc]
        pieces = Pieces(self.values.filter(pa.array(inside)), (np.cumsum(kept) - 1)[self.doc[inside]], int(kept.sum()))
        if "lengths" in self.__dict__:
            pieces.lengths = self.lengths[inside]
        return pieces

    @cached_property
    def lengths(self) -> np.ndarray:
        """Characters (code points) per piece."""
        return pc.utf8_length(self.values).to_numpy()

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Per document, how many pieces (where ``mask``)."""
        return np.bincount(self.doc if mask is None else self.doc[mask], minlength=self.num_docs)

    def total(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per document, the sum of ``values`` over its pieces (where ``mask``)."""
        if mask is None:
            return np.bincount(self.doc, weights=values, minlength=self.num_docs)
        return np.bincount(self.doc[mask], weights=values[mask], minlength=self.num_docs)

    def matches(self, pattern: str) -> np.ndarray:
        return matches(self.values, pattern)

    def repeats(self) -> np.ndarray:
        """Per piece, whether an earlier piece of its document is equal to it."""
        codes = pc.dictionary_encode(self.values).indices.to_numpy().astype(np.int64)
        keys = self.doc.astype(np.int64) * (int(codes.max(initial=0)) + 1) + codes
        return ~first_occurrences(keys)[1]


class Batch:
    """The non-empty texts of a batch and their pieces, each cut once, when first needed."""

    _PIECES = ("tokens", "words", "lines", "text_lines", "nonempty_lines", "nonblank_lines", "paragraphs")

    def __init__(self, texts: pa.Array) -> None:
        self.texts = texts
        self.num_docs = len(texts)
        self.length = pc.utf8_length(texts).to_numpy()

    def subset(self, kept: np.ndarray) -> Batch:
        """The documents where ``kept``, with the pieces already cut."""
        batch = Batch(self.texts.filter(pa.array(kept)))
        for name in self._PIECES:
            if name in self.__dict__:  # cut already: cached_property keeps it there
                batch.__dict__[name] = self.__dict__[name].of_docs(kept)
        return batch

    def count(self, substring: str) -> np.ndarray:
        """Per text, non-overlapping occurrences of ``substring``."""
        return pc.count_substring(self.texts, substring).to_numpy()

    def token_count(self) -> np.ndarray:
        """Per text, tokens as spaCy counts them: words, and each punctuation character but
        "..." once and no apostrophe inside a word."""
        tokens, words = self.tokens, self.words
        punctuation = tokens.total(tokens.lengths) - words.total(words.lengths)
        inner_apostrophes = pc.count_substring_regex(self.texts, r"\pL['’]\pL").to_numpy()
        return words.count() + punctuation - inner_apostrophes - 2 * self.count("...")

    @cached_property
    def tokens(self) -> Pieces:
        """Words and punctuation runs, in order."""
        spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(self.texts, _TOKEN_SPACING, r" \0 "))
        tokens = Pieces.of_lists(pc.utf8_split_whitespace(spaced), self.num_docs)
        empty = tokens.lengths == 0
        return tokens.where(~empty) if empty.any() else tokens

    @cached_property
    def words(self) -> Pieces:
        """The tokens that are not punctuation."""
        return self.tokens.where(~self.tokens.matches(rf"^[{_SYMBOL}]"))

    @cached_property
    def lines(self) -> Pieces:
        """As ``str.split("\\n")``, with ``\\r\\n`` as one break."""
        return Pieces.split(self.texts, _LINE_BREAK, self.num_docs)

    @cached_property
    def text_lines(self) -> Pieces:
        """As ``str.splitlines()``: no empty line after a final break."""
        lines = self.lines
        last = np.r_[lines.doc[1:] != lines.doc[:-1], True]
        return lines.where(~(last & (lines.lengths == 0)))

    @cached_property
    def nonempty_lines(self) -> Pieces:
        return self.lines.where(self.lines.lengths > 0)

    @cached_property
    def nonblank_lines(self) -> Pieces:
        """Lines with something other than whitespace."""
        return self.lines.where(pc.utf8_length(pc.utf8_trim_whitespace(self.lines.values)).to_numpy() > 0)

    @cached_property
    def paragraphs(self) -> Pieces:
        return Pieces.split(pc.utf8_trim_whitespace(self.texts), _PARAGRAPH_BREAK, self.num_docs)


def first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A number per distinct key, in order of first appearance, for every position, and
    whether the position is its key's first appearance."""
    distinct = pc.dictionary_encode(pa.array(keys)).indices.to_numpy()
    first = np.ones(len(distinct), dtype=bool)
    first[1:] = distinct[1:] > np.maximum.accumulate(distinct)[:-1]
    return distinct, first


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that spreads every bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX_1
        x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def matches(values: pa.Array, pattern: str, ignore_case: bool = False) -> np.ndarray:
    return pc.match_substring_regex(values, pattern, ignore_case=ignore_case).to_numpy(zero_copy_only=False)


Measured = dict[str, np.ndarray] | None


def measure(measured: Measured, rule: str, values: np.ndarray) -> np.ndarray:
    """``values`` (one per document: what ``rule`` compares with its threshold), recorded
    under the rule's name when ``measured`` is a dict, so that the stage can annotate them."""
    if measured is not None:
        measured[rule] = np.asarray(values, dtype=np.float64)
    return values


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    return numerator / np.maximum(denominator, 1)


def below(values: np.ndarray, limit: float | None) -> np.ndarray:
    return values < limit if limit is not None else np.zeros(len(values), dtype=bool)


def above(values: np.ndarray, limit: float | None) -> np.ndarray:
    return values > limit if limit is not None else np.zeros(len(values), dtype=bool)
