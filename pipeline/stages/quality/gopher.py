"""Gopher's quality and repetition filters (Rae et al. 2021, appendix A.1.1 and table
A1; datatrove's ``gopher_quality_filter.py`` and ``gopher_repetition_filter.py``). Each
family maps a ``Batch`` to, per reason, which documents its rule rejects."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.quality.config import GopherQualityConfig, GopherRepetitionConfig
from pipeline.stages.quality.text import (
    SPACE,
    Batch,
    Measured,
    Pieces,
    above,
    below,
    first_occurrences,
    matches,
    measure,
    mix,
    ratio,
)

GOPHER_WORD_COUNT = "gopher_word_count"
GOPHER_MEAN_WORD_LENGTH = "gopher_mean_word_length"
GOPHER_SYMBOL_RATIO = "gopher_symbol_ratio"
GOPHER_BULLET_LINES = "gopher_bullet_lines"
GOPHER_ELLIPSIS_LINES = "gopher_ellipsis_lines"
GOPHER_ALPHA_WORDS = "gopher_alpha_words"
GOPHER_STOP_WORDS = "gopher_stop_words"
GOPHER_QUALITY_REASONS = (
    GOPHER_WORD_COUNT,
    GOPHER_MEAN_WORD_LENGTH,
    GOPHER_SYMBOL_RATIO,
    GOPHER_BULLET_LINES,
    GOPHER_ELLIPSIS_LINES,
    GOPHER_ALPHA_WORDS,
    GOPHER_STOP_WORDS,
)

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
GOPHER_DUP_PARA_FRACTION = "gopher_dup_para_fraction"
GOPHER_DUP_PARA_CHAR_FRACTION = "gopher_dup_para_char_fraction"
GOPHER_DUP_LINE_FRACTION = "gopher_dup_line_fraction"
GOPHER_DUP_LINE_CHAR_FRACTION = "gopher_dup_line_char_fraction"
GOPHER_TOP_NGRAM = {n: f"gopher_top_{n}gram" for n in TOP_NGRAMS}
"""Per n of ``TOP_NGRAMS``, its reason."""
GOPHER_DUP_NGRAM = {n: f"gopher_dup_{n}gram" for n in DUP_NGRAMS}
"""Per n of ``DUP_NGRAMS``, its reason."""
GOPHER_REPETITION_REASONS = (
    GOPHER_DUP_PARA_FRACTION,
    GOPHER_DUP_PARA_CHAR_FRACTION,
    GOPHER_DUP_LINE_FRACTION,
    GOPHER_DUP_LINE_CHAR_FRACTION,
    *GOPHER_TOP_NGRAM.values(),
    *GOPHER_DUP_NGRAM.values(),
)

_BULLET_LINE = rf"^[{SPACE}]*[•\-]"
_ELLIPSIS_LINE = rf"(?:\.\.\.|…)[{SPACE}]*$"

_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
_DOC_SALT = np.uint64(0xD6E8FEB86659FD93)


def gopher_quality(batch: Batch, c: GopherQualityConfig, measured: Measured = None) -> dict[str, np.ndarray]:
    """Per ``GOPHER_QUALITY_REASONS`` reason whose rule is on, which documents it rejects."""
    words, lines = batch.words, batch.text_lines
    n_words, n_tokens = words.count(), batch.token_count()
    fired = {}
    if c.min_doc_words is not None or c.max_doc_words is not None:
        counted = measure(measured, GOPHER_WORD_COUNT, n_words)
        fired[GOPHER_WORD_COUNT] = below(counted, c.min_doc_words) | above(counted, c.max_doc_words)
    if c.min_avg_word_length is not None or c.max_avg_word_length is not None:
        mean = measure(measured, GOPHER_MEAN_WORD_LENGTH, ratio(words.total(words.lengths), n_words))
        fired[GOPHER_MEAN_WORD_LENGTH] = below(mean, c.min_avg_word_length) | above(mean, c.max_avg_word_length)
    if c.max_symbol_word_ratio is not None:
        ellipses = batch.count("...") + batch.count("…")
        symbols = np.maximum(ratio(batch.count("#"), n_tokens), ratio(ellipses, n_tokens))
        fired[GOPHER_SYMBOL_RATIO] = measure(measured, GOPHER_SYMBOL_RATIO, symbols) > c.max_symbol_word_ratio
    if c.max_bullet_lines_ratio is not None:
        bullets = lines.count(lines.matches(_BULLET_LINE))
        bullet_share = measure(measured, GOPHER_BULLET_LINES, ratio(bullets, lines.count()))
        fired[GOPHER_BULLET_LINES] = bullet_share > c.max_bullet_lines_ratio
    if c.max_ellipsis_lines_ratio is not None:
        ellipsis_lines = lines.count(lines.matches(_ELLIPSIS_LINE))
        ellipsis_share = measure(measured, GOPHER_ELLIPSIS_LINES, ratio(ellipsis_lines, lines.count()))
        fired[GOPHER_ELLIPSIS_LINES] = ellipsis_share > c.max_ellipsis_lines_ratio
    if c.min_alpha_words_ratio is not None:
        alpha = measure(measured, GOPHER_ALPHA_WORDS, ratio(words.count(_has_letter(words.values)), n_tokens))
        fired[GOPHER_ALPHA_WORDS] = alpha < c.min_alpha_words_ratio
    if c.min_stop_words is not None:
        stop_words = measure(measured, GOPHER_STOP_WORDS, _distinct_stop_words(words, c.stop_words))
        fired[GOPHER_STOP_WORDS] = stop_words < c.min_stop_words
    return fired


def _has_letter(words: pa.Array) -> np.ndarray:
    has = pc.utf8_is_alpha(words).to_numpy(zero_copy_only=False)  # all letters: cheap, and most words
    others = np.flatnonzero(~has)
    has[others] = matches(words.take(others), r"\pL")
    return has


def _distinct_stop_words(words: Pieces, stop_words: list[str]) -> np.ndarray:
    """Per document, how many of ``stop_words`` occur in it."""
    which = pc.index_in(words.values, value_set=pa.array(stop_words, pa.string()))
    found = pc.is_valid(which)
    present = np.zeros((words.num_docs, len(stop_words)), dtype=bool)
    present[words.doc[found.to_numpy(zero_copy_only=False)], which.filter(found).to_numpy()] = True
    return present.sum(axis=1)


def gopher_repetition(batch: Batch, c: GopherRepetitionConfig, measured: Measured = None) -> dict[str, np.ndarray]:
    """Per ``GOPHER_REPETITION_REASONS`` reason whose rule is on, which documents it rejects."""
    fired = {}
    for pieces_of, frac, char_frac, frac_reason, char_frac_reason in (
        ("paragraphs", c.dup_para_frac, c.dup_para_char_frac, GOPHER_DUP_PARA_FRACTION, GOPHER_DUP_PARA_CHAR_FRACTION),
        (
            "nonempty_lines",
            c.dup_line_frac,
            c.dup_line_char_frac,
            GOPHER_DUP_LINE_FRACTION,
            GOPHER_DUP_LINE_CHAR_FRACTION,
        ),
    ):
        if frac is None and char_frac is None:
            continue
        pieces = getattr(batch, pieces_of)
        repeated = pieces.repeats()
        if frac is not None:
            fired[frac_reason] = measure(measured, frac_reason, ratio(pieces.count(repeated), pieces.count())) > frac
        if char_frac is not None:
            repeated_chars = pieces.total(pieces.lengths, repeated)
            fired[char_frac_reason] = (
                measure(measured, char_frac_reason, ratio(repeated_chars, batch.length)) > char_frac
            )
    top = {n: limit for n in TOP_NGRAMS if (limit := getattr(c, f"top_{n}gram_char_frac")) is not None}
    dup = {n: limit for n in DUP_NGRAMS if (limit := getattr(c, f"dup_{n}gram_char_frac")) is not None}
    for n, chars in _ngram_chars(batch.tokens, top, dup).items():
        reason, limit = (GOPHER_TOP_NGRAM[n], top[n]) if n in top else (GOPHER_DUP_NGRAM[n], dup[n])
        fired[reason] = measure(measured, reason, ratio(chars, batch.length)) > limit
    return fired


def _ngram_chars(tokens: Pieces, top: dict[int, float], dup: dict[int, float]) -> dict[int, np.ndarray]:
    """Per n and document: for ``top`` n, the characters of the most frequent n-gram (ties:
    the first to appear), spaces included, times its count; for ``dup`` n, the characters of
    the tokens covered by an n-gram occurring earlier in the document, overlaps counted once.

    An n-gram can only occur twice where both of its (n-1)-grams do, so each n after the
    first looks only at those positions: on ordinary text a small fraction of the tokens."""
    largest = max([*top, *dup], default=0)
    if largest < 2 or len(tokens.values) == 0:
        return {}
    unigram = mix(pc.dictionary_encode(tokens.values).indices.to_numpy().astype(np.uint64))
    doc_salt = tokens.doc.astype(np.uint64) * _DOC_SALT
    start_chars = np.concatenate([[0], np.cumsum(tokens.lengths, dtype=np.int64)])
    repeated = np.ones(len(unigram), dtype=bool)  # (n-1)-grams occurring twice, by start
    ngram = unigram
    result = {}
    for n in range(2, largest + 1):
        with np.errstate(over="ignore"):
            ngram = ngram[:-1] * _NGRAM_BASE + unigram[n - 1 :]
        within_doc = tokens.doc[: len(ngram)] == tokens.doc[n - 1 :]
        candidates = np.flatnonzero(within_doc & repeated[:-1] & repeated[1:])
        keys = mix(ngram[candidates] ^ doc_salt[candidates])
        twice = _occurs_twice(keys)
        at = candidates[twice]
        repeated = np.zeros(len(ngram), dtype=bool)
        repeated[at] = True
        if n in top or n in dup:
            distinct, first = first_occurrences(keys[twice])
            if n in top:
                result[n] = _top_ngram_chars(tokens, at, distinct, first, start_chars, n)
            else:
                repeats = at[~first]
                depth = np.cumsum(
                    np.bincount(repeats, minlength=len(unigram) + 1)
                    - np.bincount(repeats + n, minlength=len(unigram) + 1)
                )[:-1]
                result[n] = tokens.total(tokens.lengths, depth > 0)
    return result


def _top_ngram_chars(
    tokens: Pieces, at: np.ndarray, distinct: np.ndarray, first: np.ndarray, start_chars: np.ndarray, n: int
) -> np.ndarray:
    """``at``: where the n-grams occurring twice start; ``distinct``/``first``: which they are."""
    # A document without a repeated n-gram: its first n-gram, once.
    chars = np.zeros(tokens.num_docs)
    has_ngram = tokens.count() >= n
    doc_start = np.searchsorted(tokens.doc, np.flatnonzero(has_ngram))
    chars[has_ngram] = start_chars[doc_start + n] - start_chars[doc_start] + n - 1
    if not len(at):
        return chars
    counts = np.bincount(distinct)
    ngram_start = at[first]  # where each distinct n-gram first occurs, in order of appearance
    ngram_doc = tokens.doc[ngram_start]
    # N-grams are numbered in order of appearance, so each document's are one run.
    runs = np.flatnonzero(np.r_[True, ngram_doc[1:] != ngram_doc[:-1]])
    best_count = np.maximum.reduceat(counts, runs)
    is_best = counts == np.repeat(best_count, np.diff(np.r_[runs, len(counts)]))
    best = np.minimum.reduceat(np.where(is_best, np.arange(len(counts)), len(counts)), runs)
    start = ngram_start[best]
    chars[ngram_doc[runs]] = (start_chars[start + n] - start_chars[start] + n - 1) * best_count
    return chars


def _occurs_twice(keys: np.ndarray) -> np.ndarray:
    """Per key, whether it occurs at least twice."""
    order = np.argsort(keys)
    equal_next = keys[order[1:]] == keys[order[:-1]]
    twice = np.zeros(len(keys), dtype=bool)
    twice[order[1:][equal_next]] = True
    twice[order[:-1][equal_next]] = True
    return twice
