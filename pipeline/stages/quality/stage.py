"""Heuristic quality rules as one document stage: Gopher quality, Gopher repetition, C4
and FineWeb, one module per family. A document failing a rule is rejected with its
reason, the first in ``REJECT_REASONS`` order; empty or whitespace-only text is rejected
as ``empty_text`` before any rule. Where each rule comes from, its thresholds and how
text is tokenized: ``docs/quality-rules.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import sketch
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

if TYPE_CHECKING:
    from pipeline.config import JobSpec

EMPTY_TEXT = "empty_text"
REJECT_REASONS = (EMPTY_TEXT, *GOPHER_QUALITY_REASONS, *GOPHER_REPETITION_REASONS, *C4_REASONS, *FINEWEB_REASONS)
"""Every reason this stage gives, in precedence order: a document failing several rules
is rejected for the first."""


QUALITY_VALUES = "quality_values"
QUALITY_VALUES_TYPE = pa.map_(pa.string(), pa.float64())
VALUE_GAMMA = sketch.log_bucket_base(0.05)
"""The report's distributions of the rules' values: buckets 10% wide, and zero apart."""


class QualityRules(DocumentStage):
    """Rejects documents that fail a heuristic quality rule. For a job that writes documents
    it also adds ``quality_values``: per rule that is on, by its reason's name, the value the
    rule compared with its threshold (word count, shares, ratios), as computed anyway (dolma's
    "tag once, filter many times": other thresholds can be applied to the output later).
    Whatever the output, it counts those values per rule for the report's distributions."""

    name = "quality"

    def __init__(self, config: QualityRulesConfig) -> None:
        super().__init__(config)
        self.record_values = False
        self._distributions: dict[str, dict[str, Any]] = {}

    def bind_job(self, spec: JobSpec) -> None:
        self.record_values = spec.output.writes_documents

    def take_stats(self) -> dict[str, dict[str, Any]] | None:
        """Per rule, the documents it measured: ``zero`` (value 0) and ``buckets`` (``VALUE_GAMMA``)."""
        taken, self._distributions = self._distributions, {}
        return taken or None

    def process(self, docs: pa.Table) -> StageOutput:
        values: dict[str, np.ndarray] = {}
        reasons = reject_reasons(docs.column(cols.TEXT), self.config, values)
        for rule, measured in values.items():
            into = self._distributions.setdefault(rule, {"zero": 0, "buckets": {}})
            into["zero"] += int(np.count_nonzero(measured == 0))
            sketch.add_counts(into["buckets"], measured, VALUE_GAMMA)
        if not self.record_values:
            return StageOutput(docs, reasons)
        return StageOutput(docs.append_column(QUALITY_VALUES, _as_maps(values, docs.num_rows)), reasons)


def _as_maps(values: dict[str, np.ndarray], num_rows: int) -> pa.Array:
    """One map per document of the values measured for it (rules that looked at it)."""
    names = list(values)
    if not names:
        return pa.array([[] for _ in range(num_rows)], QUALITY_VALUES_TYPE)
    matrix = np.column_stack([values[name] for name in names])
    present = ~np.isnan(matrix)
    counts = present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    keys = np.broadcast_to(np.array(names, dtype=object), matrix.shape)[present]
    return pa.MapArray.from_arrays(pa.array(offsets), pa.array(keys, pa.string()), pa.array(matrix[present]))


def reject_reasons(
    texts: pa.Array | pa.ChunkedArray, config: QualityRulesConfig, values: dict[str, np.ndarray] | None = None
) -> pa.Array:
    """Per text, the reason it is rejected (the first in ``REJECT_REASONS`` order), or null.
    ``values``, when given, receives per rule the value it measured for each text (NaN for
    texts an earlier family rejected, which later families do not look at)."""
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
        measured: dict[str, np.ndarray] | None = {} if values is not None else None
        first = _first_fired(rules(batch, family, measured), batch.num_docs)
        for rule, measures in (measured or {}).items():
            values.setdefault(rule, np.full(len(codes), np.nan))[undecided] = measures
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
