"""The ``quality`` stage's section of the job spec: one model per rule family, each with
the defaults of the paper and reference code it follows (``docs/quality-rules.md``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipeline.stages.base import StageConfig

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


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


class QualityRulesConfig(StageConfig):
    """The ``quality`` stage: four rule families, each switchable, checked in this order."""

    enabled: bool = False
    """Off unless a spec turns it on: tuned on web prose, the rules reject most code and
    reference text (Gopher's alphabetic-word rule alone rejects two thirds of the sample
    corpus's stdlib docstrings and code)."""
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    c4: C4Config = C4Config()
    fineweb: FineWebConfig = FineWebConfig()
