"""Heuristic quality rules: Gopher quality, Gopher repetition, C4 and FineWeb, as one
document stage. A document that fails a rule is rejected with that rule's reason; when
several fail, the first in ``REJECT_REASONS`` order names it. Empty or whitespace-only
text is rejected as ``empty_text`` before any rule, whatever rules are enabled.

Sources (thresholds are the defaults of each config field):

- Gopher quality and repetition: Rae et al. 2021, "Scaling Language Models: Methods,
  Analysis & Insights from Training Gopher" (arXiv:2112.11446), appendix A.1.1 and
  table A1; reference code datatrove ``pipeline/filters/gopher_quality_filter.py`` and
  ``gopher_repetition_filter.py``.
- C4: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer" (JMLR 21), section 2.2; reference code
  ``tensorflow_datasets/text/c4_utils.py`` as ported by datatrove's ``C4QualityFilter``
  (``pipeline/filters/c4_filters.py``). The bad-words list filter is not part of it.
- FineWeb: Penedo et al. 2024, "The FineWeb Datasets" (arXiv:2406.17557), section 3;
  reference code datatrove ``pipeline/filters/fineweb_quality_filter.py``, the filter
  that built FineWeb (datatrove ``examples/fineweb.py``).

Definitions shared by all rules, and where they differ from datatrove 0.10.1 (which
tokenizes English with spaCy):

- *Tokens* are words and punctuation runs. A *word* is a maximal run of characters that
  are not whitespace, punctuation (P*), symbols (S*) or control characters, except that
  URLs, numbers with separators (1,000.50, 11/02/2006) and abbreviations (U.S.) are
  one word each, as in spaCy: "#tag" is "#" and "tag", "don't" is "don", "'" and "t". Where tokens are
  counted, as spaCy counts them, each punctuation character is one, "..." is one, and
  an apostrophe inside a word is none. On web text (Common Crawl, forum and review text,
  speeches) this agrees with datatrove's counts within 0.3% for words and about 1% for
  tokens; on code it is looser. As in datatrove, the Gopher word count and mean word
  length are over words, the "#"/ellipsis ratios and the letter-word fraction over
  tokens. Languages written without spaces make long "words": run a language filter first.
- *Lines* are split on ``\\n`` (``\\r\\n`` counts as one break). Gopher quality and C4
  see the lines of ``str.splitlines`` (no empty line after a final break), Gopher
  repetition the non-empty ones and FineWeb the non-blank ones (as datatrove 0.10 does;
  its earlier code counted blank lines as short, unpunctuated lines). Paragraphs are
  split on two or more breaks. Character fractions are over the document's characters.
- Gopher n-grams are of tokens. The duplicate n-gram fraction counts the characters of
  the tokens covered by every occurrence of an n-gram after its first, overlaps counted
  once (the paper's wording); datatrove approximates that greedily, skipping n tokens
  after each repeat, so it can count a little less. N-grams are compared by 64-bit hashes.
- C4 rejects documents, it does not rewrite them. The reference drops lines (too long a
  word, no terminal punctuation, fewer than 3 words, "javascript", cookie/terms-of-use
  phrases) and citation markers, then rejects the page if a remaining line has "lorem
  ipsum" or "{" or fewer than 5 sentences remain. The same line tests decide which
  lines count here, so C4's decisions are made (up to sentence counting), but the text
  keeps the lines C4 would have removed. Sentences are counted with a regular expression
  (terminal punctuation followed by a space or the line end) rather than a sentence
  splitter, so abbreviations such as "U.S." can count as sentence ends.

Every rule is computed for a whole batch at once with Arrow compute kernels and NumPy,
and each family looks only at the documents the families before it kept.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline import documents as cols
from pipeline.stages.base import DocumentStage, StageOutput

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

EMPTY_TEXT = "empty_text"
GOPHER_QUALITY_REASONS = (
    "gopher_word_count",
    "gopher_mean_word_length",
    "gopher_symbol_ratio",
    "gopher_bullet_lines",
    "gopher_ellipsis_lines",
    "gopher_alpha_words",
    "gopher_stop_words",
)
GOPHER_REPETITION_REASONS = (
    "gopher_dup_para_fraction",
    "gopher_dup_para_char_fraction",
    "gopher_dup_line_fraction",
    "gopher_dup_line_char_fraction",
    *(f"gopher_top_{n}gram" for n in TOP_NGRAMS),
    *(f"gopher_dup_{n}gram" for n in DUP_NGRAMS),
)
C4_REASONS = ("c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences")
FINEWEB_REASONS = ("fineweb_line_punct", "fineweb_short_lines", "fineweb_char_dup", "fineweb_list_ratio")
REJECT_REASONS = (EMPTY_TEXT, *GOPHER_QUALITY_REASONS, *GOPHER_REPETITION_REASONS, *C4_REASONS, *FINEWEB_REASONS)
"""Every reason this stage gives, in precedence order: a document failing several rules
is rejected for the first."""

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]

_SPACE = r"\s\p{Z}"
_SYMBOL = r"\p{P}\p{S}\x00-\x08\x0e-\x1f\x7f-\x9f"  # punctuation, symbols, control characters
# Spaced out to cut text into tokens: punctuation runs, and (kept whole, as spaCy keeps
# them) URLs, numbers with separators such as 1,000.50 or 11/02/2006, and abbreviations
# such as U.S. or e.g.
_TOKEN_SPACING = rf"(?:https?://|www\.)[^{_SPACE}]+|\pN+(?:[.,:/]\pN+)+|[A-Za-z]\.(?:[A-Za-z]\.)+|[{_SYMBOL}]+"
_LINE_BREAK = r"\r?\n"
_PARAGRAPH_BREAK = r"(?:\r?\n){2,}"
_BULLET_LINE = rf"^[{_SPACE}]*[•\-]"
_ELLIPSIS_LINE = rf"(?:\.\.\.|…)[{_SPACE}]*$"
_C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
_C4_TERMINAL = r"[.?!\"']$"
_C4_POLICY = "terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
_SENTENCE_END = rf"[.!?]+[\"'”’)\]]*(?:[{_SPACE}]|$)"
_FINEWEB_STOP = r"[.'\"!?]$"

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
_DOC_SALT = np.uint64(0xD6E8FEB86659FD93)


class GopherQualityConfig(BaseModel):
    """Gopher's quality filter (Rae et al. 2021, A.1.1); defaults as in the paper and datatrove.
    Setting a threshold to null turns its rule off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_doc_words: int | None = Field(50, ge=0)
    """``gopher_word_count``: fewer words than this rejects."""
    max_doc_words: int | None = Field(100_000, ge=0)
    """``gopher_word_count``: more words than this rejects."""
    min_avg_word_length: float | None = Field(3, ge=0)
    """``gopher_mean_word_length``: a mean word length (characters) below this rejects."""
    max_avg_word_length: float | None = Field(10, ge=0)
    """``gopher_mean_word_length``: a mean word length above this rejects."""
    max_symbol_word_ratio: float | None = Field(0.1, ge=0)
    """``gopher_symbol_ratio``: more "#", or more ellipses ("..." or "…"), per token than this rejects."""
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1)
    """``gopher_bullet_lines``: a larger fraction of lines starting with "•" or "-" rejects."""
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1)
    """``gopher_ellipsis_lines``: a larger fraction of lines ending with "..." or "…" rejects."""
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1)
    """``gopher_alpha_words``: a smaller fraction of tokens that are words with a letter
    rejects; punctuation tokens count, as in datatrove (there: ``max_non_alpha_words_ratio``)."""
    min_stop_words: int | None = Field(2, ge=0)
    """``gopher_stop_words``: fewer distinct ``stop_words`` in the document than this rejects
    ("at least two of the following words", as datatrove 0.10 counts them)."""
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))
    """Matched case-sensitively, as in datatrove: "The" is not "the"."""


class GopherRepetitionConfig(BaseModel):
    """Gopher's repetition filter (Rae et al. 2021, table A1); defaults as in the paper and
    datatrove. A fraction above its threshold rejects; null turns the rule off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    dup_para_frac: float | None = Field(0.3, ge=0, le=1)
    """``gopher_dup_para_fraction``: paragraphs equal to an earlier one, over all paragraphs."""
    dup_para_char_frac: float | None = Field(0.2, ge=0, le=1)
    """``gopher_dup_para_char_fraction``: characters in those paragraphs, over the document's."""
    dup_line_frac: float | None = Field(0.3, ge=0, le=1)
    """``gopher_dup_line_fraction``: lines equal to an earlier one, over all non-empty lines."""
    dup_line_char_frac: float | None = Field(0.2, ge=0, le=1)
    """``gopher_dup_line_char_fraction``: characters in those lines, over the document's."""
    top_2gram_char_frac: float | None = Field(0.20, ge=0)
    """``gopher_top_2gram``: characters of the most frequent token 2-gram (its tokens and the
    space between them) times its count, over the document's characters."""
    top_3gram_char_frac: float | None = Field(0.18, ge=0)
    """``gopher_top_3gram``: the same for 3-grams."""
    top_4gram_char_frac: float | None = Field(0.16, ge=0)
    """``gopher_top_4gram``: the same for 4-grams."""
    dup_5gram_char_frac: float | None = Field(0.15, ge=0, le=1)
    """``gopher_dup_5gram``: characters of the tokens covered by repeated token 5-grams,
    over the document's characters."""
    dup_6gram_char_frac: float | None = Field(0.14, ge=0, le=1)
    """``gopher_dup_6gram``: the same for 6-grams."""
    dup_7gram_char_frac: float | None = Field(0.13, ge=0, le=1)
    """``gopher_dup_7gram``: the same for 7-grams."""
    dup_8gram_char_frac: float | None = Field(0.12, ge=0, le=1)
    """``gopher_dup_8gram``: the same for 8-grams."""
    dup_9gram_char_frac: float | None = Field(0.11, ge=0, le=1)
    """``gopher_dup_9gram``: the same for 9-grams."""
    dup_10gram_char_frac: float | None = Field(0.10, ge=0, le=1)
    """``gopher_dup_10gram``: the same for 10-grams."""


class C4Config(BaseModel):
    """C4's page filter (Raffel et al. 2020, 2.2) as in TFDS ``c4_utils`` and datatrove's
    ``C4QualityFilter``, whose defaults these are. The first three fields are the rules; the
    line options decide which lines count for them (no line is removed from the text)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    filter_lorem_ipsum: bool = True
    """``c4_lorem_ipsum``: a counted line containing "lorem ipsum" (any case) rejects."""
    filter_curly_bracket: bool = True
    """``c4_curly_bracket``: a counted line containing "{" rejects."""
    min_num_sentences: int | None = Field(5, ge=0)
    """``c4_too_few_sentences``: fewer sentences than this in the counted lines rejects."""
    max_word_length: int | None = Field(1000, ge=1)
    """A line with a whitespace-separated word longer than this does not count."""
    remove_citations: bool = True
    """Ignore "[1]", "[edit]" and "[citation needed]" markers when testing a line's end."""
    filter_no_terminal_punct: bool = True
    """A line not ending in . ? ! " or ', or ending in "...", does not count. (FineWeb
    turned this off, leaving the job to ``fineweb.line_punct_thr``.)"""
    min_words_per_line: int | None = Field(3, ge=0, le=1000)
    """A line with fewer whitespace-separated words does not count."""
    filter_javascript: bool = True
    """A line mentioning "javascript" does not count (nor is checked for "{")."""
    filter_policy: bool = True
    """A line with "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of
    cookies" or "use cookies" does not count as a sentence source."""


class FineWebConfig(BaseModel):
    """FineWeb's own filters (Penedo et al. 2024, section 3) with the defaults of datatrove's
    ``FineWebQualityFilter``, which built FineWeb, over non-blank lines. Null turns a rule off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    line_punct_thr: float | None = Field(0.12, ge=0, le=1)
    """``fineweb_line_punct``: a fraction of lines ending in . ' " ! or ? at or below this
    rejects (paper: "<= 0.12"; datatrove 0.10 rejects below it only, and counts other
    scripts' sentence ends but not quotes)."""
    line_punct_exclude_zero: bool = False
    """Keep documents where no line ends in punctuation (a fraction of exactly 0)."""
    short_line_thr: float | None = Field(0.67, ge=0, le=1)
    """``fineweb_short_lines``: a fraction of short lines at or above this rejects (paper:
    ">= 0.67"; datatrove 0.10: above)."""
    short_line_length: int = Field(30, ge=0)
    """A line of at most this many characters is short."""
    char_duplicates_ratio: float | None = Field(0.01, ge=0, le=1)
    """``fineweb_char_dup``: characters in lines equal to an earlier line, over the document's
    characters other than newlines, at or above this rejects (datatrove 0.10: above). The
    paper's text gives 0.1; the code that built FineWeb, followed here, uses 0.01."""
    new_line_ratio: float | None = Field(0.3, ge=0)
    """``fineweb_list_ratio``: more newlines per token than this rejects."""


class QualityRulesConfig(BaseModel):
    """The ``quality`` stage: four rule families, each switchable, checked in this order."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Off unless a spec turns it on: tuned on web prose, the rules reject most code and
    reference text (Gopher's alphabetic-word rule alone rejects two thirds of the sample
    corpus's stdlib docstrings and code)."""
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    c4: C4Config = C4Config()
    fineweb: FineWebConfig = FineWebConfig()


class QualityRules(DocumentStage):
    """Rejects documents that fail a heuristic quality rule; adds no columns."""

    name = "quality"

    def process(self, docs: pa.Table) -> StageOutput:
        return StageOutput(docs, reject_reasons(docs.column(cols.TEXT), self.config))


def reject_reasons(texts: pa.Array | pa.ChunkedArray, config: QualityRulesConfig) -> pa.Array:
    """Per text, the reason it is rejected (the first in ``REJECT_REASONS`` order), or null."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), True).to_numpy(
        zero_copy_only=False)
    codes = np.where(empty, REJECT_REASONS.index(EMPTY_TEXT), -1)
    # Each family looks only at the documents the families before it kept.
    undecided = np.flatnonzero(~empty)
    batch = _Batch(texts.filter(pa.array(~empty)))
    for family, rules in (
        (config.gopher_quality, _gopher_quality),
        (config.gopher_repetition, _gopher_repetition),
        (config.c4, _c4),
        (config.fineweb, _fineweb),
    ):
        if not family.enabled or batch.num_docs == 0:
            continue
        first = _first_fired(rules(batch, family), batch.num_docs)
        codes[undecided] = first
        kept = first < 0
        if not kept.all():
            undecided, batch = undecided[kept], batch.subset(kept)
    return pc.take(pa.array(REJECT_REASONS, pa.string()), pa.array(codes, mask=codes < 0))


def _first_fired(fired: dict[str, np.ndarray], num_docs: int) -> np.ndarray:
    """Per document, the index in ``REJECT_REASONS`` of the first rule that fired, or -1."""
    first = np.full(num_docs, -1)
    for index, reason in enumerate(REJECT_REASONS):
        if reason in fired:
            first[(first < 0) & fired[reason]] = index
    return first


def _gopher_quality(batch: "_Batch", c: GopherQualityConfig) -> dict[str, np.ndarray]:
    words, lines = batch.words, batch.text_lines
    n_words, n_tokens = words.count(), batch.token_count()
    fired = {}
    if c.min_doc_words is not None or c.max_doc_words is not None:
        fired["gopher_word_count"] = _below(n_words, c.min_doc_words) | _above(n_words, c.max_doc_words)
    if c.min_avg_word_length is not None or c.max_avg_word_length is not None:
        mean = _ratio(words.total(words.lengths), n_words)
        fired["gopher_mean_word_length"] = _below(mean, c.min_avg_word_length) | _above(mean, c.max_avg_word_length)
    if c.max_symbol_word_ratio is not None:
        ellipses = batch.count("...") + batch.count("…")
        fired["gopher_symbol_ratio"] = (_ratio(batch.count("#"), n_tokens) > c.max_symbol_word_ratio) | (
            _ratio(ellipses, n_tokens) > c.max_symbol_word_ratio)
    if c.max_bullet_lines_ratio is not None:
        bullets = lines.count(lines.matches(_BULLET_LINE))
        fired["gopher_bullet_lines"] = _ratio(bullets, lines.count()) > c.max_bullet_lines_ratio
    if c.max_ellipsis_lines_ratio is not None:
        ellipsis_lines = lines.count(lines.matches(_ELLIPSIS_LINE))
        fired["gopher_ellipsis_lines"] = _ratio(ellipsis_lines, lines.count()) > c.max_ellipsis_lines_ratio
    if c.min_alpha_words_ratio is not None:
        fired["gopher_alpha_words"] = _ratio(words.count(_has_letter(words.values)), n_tokens) < c.min_alpha_words_ratio
    if c.min_stop_words is not None:
        fired["gopher_stop_words"] = _distinct_stop_words(words, c.stop_words) < c.min_stop_words
    return fired


def _has_letter(words: pa.Array) -> np.ndarray:
    has = pc.utf8_is_alpha(words).to_numpy(zero_copy_only=False)  # all letters: cheap, and most words
    others = np.flatnonzero(~has)
    has[others] = _matches(words.take(others), r"\pL")
    return has


def _distinct_stop_words(words: "_Pieces", stop_words: list[str]) -> np.ndarray:
    """Per document, how many of ``stop_words`` occur in it."""
    which = pc.index_in(words.values, value_set=pa.array(stop_words, pa.string()))
    found = pc.is_valid(which)
    present = np.zeros((words.num_docs, len(stop_words)), dtype=bool)
    present[words.doc[found.to_numpy(zero_copy_only=False)], which.filter(found).to_numpy()] = True
    return present.sum(axis=1)


def _gopher_repetition(batch: "_Batch", c: GopherRepetitionConfig) -> dict[str, np.ndarray]:
    fired = {}
    for pieces_of, name, frac, char_frac in (
        ("paragraphs", "para", c.dup_para_frac, c.dup_para_char_frac),
        ("nonempty_lines", "line", c.dup_line_frac, c.dup_line_char_frac),
    ):
        if frac is None and char_frac is None:
            continue
        pieces = getattr(batch, pieces_of)
        repeated = pieces.repeats()
        if frac is not None:
            fired[f"gopher_dup_{name}_fraction"] = _ratio(pieces.count(repeated), pieces.count()) > frac
        if char_frac is not None:
            repeated_chars = pieces.total(pieces.lengths, repeated)
            fired[f"gopher_dup_{name}_char_fraction"] = _ratio(repeated_chars, batch.length) > char_frac
    top = {n: limit for n in TOP_NGRAMS if (limit := getattr(c, f"top_{n}gram_char_frac")) is not None}
    dup = {n: limit for n in DUP_NGRAMS if (limit := getattr(c, f"dup_{n}gram_char_frac")) is not None}
    for n, chars in _ngram_chars(batch.tokens, top, dup).items():
        kind, limit = ("top", top[n]) if n in top else ("dup", dup[n])
        fired[f"gopher_{kind}_{n}gram"] = _ratio(chars, batch.length) > limit
    return fired


def _ngram_chars(tokens: "_Pieces", top: dict[int, float], dup: dict[int, float]) -> dict[int, np.ndarray]:
    """Per n and document: for ``top`` n, the characters of the most frequent n-gram (ties:
    the first to appear), spaces included, times its count; for ``dup`` n, the characters of
    the tokens covered by an n-gram occurring earlier in the document, overlaps counted once.

    An n-gram can only occur twice where both of its (n-1)-grams do, so each n after the
    first looks only at those positions: on ordinary text a small fraction of the tokens."""
    largest = max([*top, *dup], default=0)
    if largest < 2 or len(tokens.values) == 0:
        return {}
    unigram = _mix(pc.dictionary_encode(tokens.values).indices.to_numpy().astype(np.uint64))
    doc_salt = tokens.doc.astype(np.uint64) * _DOC_SALT
    start_chars = np.concatenate([[0], np.cumsum(tokens.lengths, dtype=np.int64)])
    repeated = np.ones(len(unigram), dtype=bool)  # (n-1)-grams occurring twice, by start
    ngram = unigram
    result = {}
    for n in range(2, largest + 1):
        with np.errstate(over="ignore"):
            ngram = ngram[:-1] * _NGRAM_BASE + unigram[n - 1:]
        within_doc = tokens.doc[:len(ngram)] == tokens.doc[n - 1:]
        candidates = np.flatnonzero(within_doc & repeated[:-1] & repeated[1:])
        keys = _mix(ngram[candidates] ^ doc_salt[candidates])
        twice = _occurs_twice(keys)
        at = candidates[twice]
        repeated = np.zeros(len(ngram), dtype=bool)
        repeated[at] = True
        if n in top or n in dup:
            distinct, first = _first_occurrences(keys[twice])
            if n in top:
                result[n] = _top_ngram_chars(tokens, at, distinct, first, start_chars, n)
            else:
                repeats = at[~first]
                depth = np.cumsum(np.bincount(repeats, minlength=len(unigram) + 1)
                                  - np.bincount(repeats + n, minlength=len(unigram) + 1))[:-1]
                result[n] = tokens.total(tokens.lengths, depth > 0)
    return result


def _top_ngram_chars(tokens: "_Pieces", at: np.ndarray, distinct: np.ndarray, first: np.ndarray,
                     start_chars: np.ndarray, n: int) -> np.ndarray:
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


def _c4(batch: "_Batch", c: C4Config) -> dict[str, np.ndarray]:
    lines = batch.lines
    stripped = pc.utf8_trim_whitespace(lines.values)
    cleaned = pc.replace_substring_regex(stripped, _C4_CITATION, "") if c.remove_citations else stripped
    counted = np.ones(len(stripped), dtype=bool)
    if c.max_word_length is not None:
        long_lines = np.flatnonzero(pc.utf8_length(stripped).to_numpy() > c.max_word_length)
        long_words = _Pieces.whitespace_words(stripped.take(long_lines))
        counted[long_lines[np.unique(long_words.doc[long_words.lengths > c.max_word_length])]] = False
    if c.filter_no_terminal_punct:
        counted &= _matches(cleaned, _C4_TERMINAL) & ~_matches(cleaned, r"\.\.\.$")
    if c.min_words_per_line:
        at_least = rf"^(?:[^{_SPACE}]+[{_SPACE}]+){{{c.min_words_per_line - 1}}}[^{_SPACE}]"
        counted &= _matches(stripped, at_least)
    fired = {}
    if c.filter_lorem_ipsum:
        fired["c4_lorem_ipsum"] = lines.count(counted & _matches(cleaned, "lorem ipsum", ignore_case=True)) > 0
    if c.filter_javascript:
        counted &= ~_matches(cleaned, "javascript", ignore_case=True)
    if c.filter_curly_bracket:
        fired["c4_curly_bracket"] = lines.count(counted & _matches(cleaned, r"\{")) > 0
    if c.filter_policy:
        counted &= ~_matches(cleaned, _C4_POLICY, ignore_case=True)
    if c.min_num_sentences is not None:
        sentences = np.maximum(pc.count_substring_regex(cleaned, _SENTENCE_END).to_numpy(), 1)
        fired["c4_too_few_sentences"] = lines.total(sentences, counted) < c.min_num_sentences
    return fired


def _fineweb(batch: "_Batch", c: FineWebConfig) -> dict[str, np.ndarray]:
    lines = batch.nonblank_lines
    n_lines = lines.count()
    fired = {}
    if c.line_punct_thr is not None:
        ratio = _ratio(lines.count(lines.matches(_FINEWEB_STOP)), n_lines)
        fired["fineweb_line_punct"] = (ratio <= c.line_punct_thr) & ~(c.line_punct_exclude_zero & (ratio == 0))
    if c.short_line_thr is not None:
        fired["fineweb_short_lines"] = _ratio(lines.count(lines.lengths <= c.short_line_length),
                                              n_lines) >= c.short_line_thr
    newlines = batch.count("\n")
    if c.char_duplicates_ratio is not None:
        repeated_chars = lines.total(lines.lengths, lines.repeats())
        fired["fineweb_char_dup"] = _ratio(repeated_chars, batch.length - newlines) >= c.char_duplicates_ratio
    if c.new_line_ratio is not None:
        fired["fineweb_list_ratio"] = _ratio(newlines, batch.token_count()) > c.new_line_ratio
    return fired


class _Pieces:
    """The pieces (tokens, words, lines, paragraphs) of every document of a batch, flattened
    in document order; ``doc`` is the document each piece belongs to."""

    def __init__(self, values: pa.Array, doc: np.ndarray, num_docs: int) -> None:
        self.values = values
        self.doc = doc
        self.num_docs = num_docs

    @classmethod
    def split(cls, texts: pa.Array, pattern: str, num_docs: int) -> "_Pieces":
        """Cut at every match of the regular expression ``pattern``."""
        return cls.of_lists(pc.split_pattern_regex(texts, pattern), num_docs)

    @classmethod
    def whitespace_words(cls, texts: pa.Array) -> "_Pieces":
        """As ``str.split()``."""
        return cls.of_lists(pc.utf8_split_whitespace(texts), len(texts))

    @classmethod
    def of_lists(cls, lists: pa.ListArray, num_docs: int) -> "_Pieces":
        return cls(pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(), num_docs)

    def where(self, mask: np.ndarray) -> "_Pieces":
        return _Pieces(self.values.filter(pa.array(mask)), self.doc[mask], self.num_docs)

    def of_docs(self, kept: np.ndarray) -> "_Pieces":
        """The pieces of the documents where ``kept``, numbered among those."""
        inside = kept[self.doc]
        pieces = _Pieces(self.values.filter(pa.array(inside)), (np.cumsum(kept) - 1)[self.doc[inside]],
                         int(kept.sum()))
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
        return _matches(self.values, pattern)

    def repeats(self) -> np.ndarray:
        """Per piece, whether an earlier piece of its document is equal to it."""
        codes = pc.dictionary_encode(self.values).indices.to_numpy().astype(np.int64)
        keys = self.doc.astype(np.int64) * (int(codes.max(initial=0)) + 1) + codes
        return ~_first_occurrences(keys)[1]


class _Batch:
    """The non-empty texts of a batch and their pieces, each cut once, when first needed."""

    _PIECES = ("tokens", "words", "lines", "text_lines", "nonempty_lines", "nonblank_lines", "paragraphs")

    def __init__(self, texts: pa.Array) -> None:
        self.texts = texts
        self.num_docs = len(texts)
        self.length = pc.utf8_length(texts).to_numpy()

    def subset(self, kept: np.ndarray) -> "_Batch":
        """The documents where ``kept``, with the pieces already cut."""
        batch = _Batch(self.texts.filter(pa.array(kept)))
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
    def tokens(self) -> _Pieces:
        """Words and punctuation runs, in order."""
        spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(self.texts, _TOKEN_SPACING, r" \0 "))
        tokens = _Pieces.of_lists(pc.utf8_split_whitespace(spaced), self.num_docs)
        empty = tokens.lengths == 0
        return tokens.where(~empty) if empty.any() else tokens

    @cached_property
    def words(self) -> _Pieces:
        """The tokens that are not punctuation."""
        return self.tokens.where(~self.tokens.matches(rf"^[{_SYMBOL}]"))

    @cached_property
    def lines(self) -> _Pieces:
        """As ``str.split("\\n")``, with ``\\r\\n`` as one break."""
        return _Pieces.split(self.texts, _LINE_BREAK, self.num_docs)

    @cached_property
    def text_lines(self) -> _Pieces:
        """As ``str.splitlines()``: no empty line after a final break."""
        lines = self.lines
        last = np.r_[lines.doc[1:] != lines.doc[:-1], True]
        return lines.where(~(last & (lines.lengths == 0)))

    @cached_property
    def nonempty_lines(self) -> _Pieces:
        return self.lines.where(self.lines.lengths > 0)

    @cached_property
    def nonblank_lines(self) -> _Pieces:
        """Lines with something other than whitespace."""
        return self.lines.where(pc.utf8_length(pc.utf8_trim_whitespace(self.lines.values)).to_numpy() > 0)

    @cached_property
    def paragraphs(self) -> _Pieces:
        return _Pieces.split(pc.utf8_trim_whitespace(self.texts), _PARAGRAPH_BREAK, self.num_docs)


def _first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A number per distinct key, in order of first appearance, for every position, and
    whether the position is its key's first appearance."""
    distinct = pc.dictionary_encode(pa.array(keys)).indices.to_numpy()
    first = np.ones(len(distinct), dtype=bool)
    first[1:] = distinct[1:] > np.maximum.accumulate(distinct)[:-1]
    return distinct, first


def _occurs_twice(keys: np.ndarray) -> np.ndarray:
    """Per key, whether it occurs at least twice."""
    order = np.argsort(keys)
    equal_next = keys[order[1:]] == keys[order[:-1]]
    twice = np.zeros(len(keys), dtype=bool)
    twice[order[1:][equal_next]] = True
    twice[order[:-1][equal_next]] = True
    return twice


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that spreads every bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX_1
        x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def _matches(values: pa.Array, pattern: str, ignore_case: bool = False) -> np.ndarray:
    return pc.match_substring_regex(values, pattern, ignore_case=ignore_case).to_numpy(zero_copy_only=False)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    return numerator / np.maximum(denominator, 1)


def _below(values: np.ndarray, limit: float | None) -> np.ndarray:
    return values < limit if limit is not None else np.zeros(len(values), dtype=bool)


def _above(values: np.ndarray, limit: float | None) -> np.ndarray:
    return values > limit if limit is not None else np.zeros(len(values), dtype=bool)
