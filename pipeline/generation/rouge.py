"""ROUGE-L F-measure as Self-Instruct filters with it (Google's ``rouge_score`` with
``use_stemmer=False``: lowercase, non-alphanumerics as spaces), against a growing pool.

The longest common subsequence is computed bit-parallel (Hyyrö 2004): one pass over the
candidate's tokens, each a few big-integer operations on a bit vector of the pool entry, so
checking a candidate against thousands of instructions takes milliseconds."""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    return _NON_ALNUM.sub(" ", text.lower()).split()


class _Entry:
    __slots__ = ("length", "full", "masks")

    def __init__(self, tokens: list[str]) -> None:
        self.length = len(tokens)
        self.full = (1 << len(tokens)) - 1
        self.masks: dict[str, int] = {}
        for i, token in enumerate(tokens):
            self.masks[token] = self.masks.get(token, 0) | (1 << i)

    def lcs(self, other: list[str]) -> int:
        v = self.full
        for token in other:
            u = v & self.masks.get(token, 0)
            v = ((v + u) | (v - u)) & self.full
        return self.length - v.bit_count()


def lcs_length(a: list[str], b: list[str]) -> int:
    return _Entry(a).lcs(b)


def rouge_l(a: str, b: str) -> float:
    ta, tb = rouge_tokens(a), rouge_tokens(b)
    return _fmeasure(lcs_length(ta, tb), len(ta), len(tb))


def _fmeasure(lcs: int, la: int, lb: int) -> float:
    if not lcs:
        return 0.0
    precision, recall = lcs / lb, lcs / la
    return 2 * precision * recall / (precision + recall)


class SimilarityPool:
    """Texts added so far; ``most_similar`` gives the highest ROUGE-L F of a text to any."""

    def __init__(self, texts: list[str] = ()) -> None:
        self.entries: list[_Entry] = []
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, text: str) -> None:
        self.entries.append(_Entry(rouge_tokens(text)))

    def most_similar(self, text: str) -> float:
        tokens = rouge_tokens(text)
        best = 0.0
        for entry in self.entries:
            # LCS <= the shorter length: skip entries that cannot beat the best so far
            if _fmeasure(min(entry.length, len(tokens)), entry.length, len(tokens)) <= best:
                continue
            best = max(best, _fmeasure(entry.lcs(tokens), entry.length, len(tokens)))
        return best
