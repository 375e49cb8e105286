"""FineWeb's own filters (Penedo et al. 2024, section 3) with the defaults of datatrove's
``FineWebQualityFilter``, the filter that built FineWeb, over non-blank lines."""

from __future__ import annotations

import numpy as np

from pipeline.stages.quality.config import FineWebConfig
from pipeline.stages.quality.text import Batch, Measured, measure, ratio

FINEWEB_LINE_PUNCT = "fineweb_line_punct"
FINEWEB_SHORT_LINES = "fineweb_short_lines"
FINEWEB_CHAR_DUP = "fineweb_char_dup"
FINEWEB_LIST_RATIO = "fineweb_list_ratio"
FINEWEB_REASONS = (FINEWEB_LINE_PUNCT, FINEWEB_SHORT_LINES, FINEWEB_CHAR_DUP, FINEWEB_LIST_RATIO)

_FINEWEB_STOP = r"[.'\"!?]$"


def fineweb(batch: Batch, c: FineWebConfig, measured: Measured = None) -> dict[str, np.ndarray]:
    """Per ``FINEWEB_REASONS`` reason whose rule is on, which documents it rejects."""
    lines = batch.nonblank_lines
    n_lines = lines.count()
    fired = {}
    if c.line_punct_thr is not None:
        punct = measure(measured, FINEWEB_LINE_PUNCT, ratio(lines.count(lines.matches(_FINEWEB_STOP)), n_lines))
        fired[FINEWEB_LINE_PUNCT] = (punct <= c.line_punct_thr) & ~(c.line_punct_exclude_zero & (punct == 0))
    if c.short_line_thr is not None:
        short = measure(
            measured, FINEWEB_SHORT_LINES, ratio(lines.count(lines.lengths <= c.short_line_length), n_lines)
        )
        fired[FINEWEB_SHORT_LINES] = short >= c.short_line_thr
    newlines = batch.count("\n")
    if c.char_duplicates_ratio is not None:
        repeated_chars = lines.total(lines.lengths, lines.repeats())
        char_dup = measure(measured, FINEWEB_CHAR_DUP, ratio(repeated_chars, batch.length - newlines))
        fired[FINEWEB_CHAR_DUP] = char_dup >= c.char_duplicates_ratio
    if c.new_line_ratio is not None:
        fired[FINEWEB_LIST_RATIO] = (
            measure(measured, FINEWEB_LIST_RATIO, ratio(newlines, batch.token_count())) > c.new_line_ratio
        )
    return fired
