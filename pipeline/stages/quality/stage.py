"""Heuristic quality rules as one document stage: Gopher quality, Gopher repetition, C4
and FineWeb, one module per family. A document failing a rule is rejected with its
reason, the first in ``REJECT_REASONS`` order; empty or whitespace-only text is rejected
as ``empty_text`` before any rule. Where each rule comes from, its thresholds and how
text is tokenized: ``docs/quality-rules.md``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.quality.c4 import C4_REASONS, c4
from pipeline.stages.quality.config import QualityRulesConfig
from pipeline.stages.quality.fineweb import FINEWEB_REASONS, fineweb
from pipeline.stages.quality.gopher import (
    GOPHER_QUALITY_REASONS,
    GOPHER_REPETITION_REASONS,
    gopher_quality,
    gopher_repetition,
)
from pipeline.stages.quality.text import Batch

EMPTY_TEXT = "empty_text"
REJECT_REASONS = (EMPTY_TEXT, *GOPHER_QUALITY_REASONS, *GOPHER_REPETITION_REASONS, *C4_REASONS, *FINEWEB_REASONS)
"""Every reason this stage gives, in precedence order: a document failing several rules
is rejected for the first."""


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
        zero_copy_only=False
    )
    codes = np.where(empty, REJECT_REASONS.index(EMPTY_TEXT), -1)
    # Each family looks only at the documents the families before it kept.
    undecided = np.flatnonzero(~empty)
    batch = Batch(texts.filter(pa.array(~empty)))
    for family, rules in (
        (config.gopher_quality, gopher_quality),
        (config.gopher_repetition, gopher_repetition),
        (config.c4, c4),
        (config.fineweb, fineweb),
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
