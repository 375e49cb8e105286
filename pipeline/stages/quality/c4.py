"""C4's page filter (Raffel et al. 2020, section 2.2) as in TFDS ``c4_utils`` and
datatrove's ``C4QualityFilter``. It rejects documents and removes no lines: C4's line
tests only decide which lines count (``docs/quality-rules.md``)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from pipeline.stages.quality.config import C4Config
from pipeline.stages.quality.text import SPACE, Batch, Measured, Pieces, matches, measure

C4_LOREM_IPSUM = "c4_lorem_ipsum"
C4_CURLY_BRACKET = "c4_curly_bracket"
C4_TOO_FEW_SENTENCES = "c4_too_few_sentences"
C4_REASONS = (C4_LOREM_IPSUM, C4_CURLY_BRACKET, C4_TOO_FEW_SENTENCES)

_C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
_C4_TERMINAL = r"[.?!\"']$"
_C4_POLICY = "terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
_SENTENCE_END = rf"[.!?]+[\"'”’)\]]*(?:[{SPACE}]|$)"


def c4(batch: Batch, c: C4Config, measured: Measured = None) -> dict[str, np.ndarray]:
    """Per ``C4_REASONS`` reason whose rule is on, which documents it rejects."""
    lines = batch.lines
    stripped = pc.utf8_trim_whitespace(lines.values)
    cleaned = pc.replace_substring_regex(stripped, _C4_CITATION, "") if c.remove_citations else stripped
    counted = np.ones(len(stripped), dtype=bool)
    if c.max_word_length is not None:
        long_lines = np.flatnonzero(pc.utf8_length(stripped).to_numpy() > c.max_word_length)
        long_words = Pieces.whitespace_words(stripped.take(long_lines))
        counted[long_lines[np.unique(long_words.doc[long_words.lengths > c.max_word_length])]] = False
    if c.filter_no_terminal_punct:
        counted &= matches(cleaned, _C4_TERMINAL) & ~matches(cleaned, r"\.\.\.$")
    if c.min_words_per_line:
        at_least = rf"^(?:[^{SPACE}]+[{SPACE}]+){{{c.min_words_per_line - 1}}}[^{SPACE}]"
        counted &= matches(stripped, at_least)
    fired = {}
    if c.filter_lorem_ipsum:
        fired[C4_LOREM_IPSUM] = lines.count(counted & matches(cleaned, "lorem ipsum", ignore_case=True)) > 0
    if c.filter_javascript:
        counted &= ~matches(cleaned, "javascript", ignore_case=True)
    if c.filter_curly_bracket:
        fired[C4_CURLY_BRACKET] = lines.count(counted & matches(cleaned, r"\{")) > 0
    if c.filter_policy:
        counted &= ~matches(cleaned, _C4_POLICY, ignore_case=True)
    if c.min_num_sentences is not None:
        sentences = np.maximum(pc.count_substring_regex(cleaned, _SENTENCE_END).to_numpy(), 1)
        counted_sentences = measure(measured, C4_TOO_FEW_SENTENCES, lines.total(sentences, counted))
        fired[C4_TOO_FEW_SENTENCES] = counted_sentences < c.min_num_sentences
    return fired
