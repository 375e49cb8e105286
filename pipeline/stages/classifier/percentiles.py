"""The global half of the classifier stage: cut points at percentiles of the whole run's
scores, and the documents outside each classifier's kept band."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import sketch
from pipeline.core.annotated import NODE, AnnotatedShards
from pipeline.stages.base import GlobalStage, removal_table
from pipeline.stages.classifier.config import ClassifierConfig, ClassifierEntry
from pipeline.stages.classifier.stage import above_reason, below_reason

# Probabilities are sketched as odds p / (1 - p): log buckets of the odds are even steps of
# the logit, fine at both ends of [0, 1] where a log bucket of p itself would lump the top
# scores together. fastText's probabilities can reach 1.00001; beyond these bounds scores tie.
_P_MIN, _P_MAX = 1e-9, 1 - 1e-9


def odds(scores: np.ndarray) -> np.ndarray:
    p = np.clip(scores.astype(np.float64), _P_MIN, _P_MAX)
    return p / (1 - p)


class ClassifierPercentiles(GlobalStage):
    """For each classifier with ``min_percentile`` or ``max_percentile``: the score at those
    percentiles of every new document's score (``pipeline.core.sketch``: the same cut points
    however the run is split), then removals below the low cut and above the high cut.

    Cut points, once found for a classifier, are kept in the dedup index: a later run on a
    grown input cuts its new documents at the same scores, so whether a document is kept
    does not depend on which delivery brought it."""

    name = "classifier"

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        self.entries = [entry for entry in config.classifiers if entry.uses_percentiles]
        self.index_columns = tuple(entry.score_column for entry in self.entries)

    def find_removals(self, shards: AnnotatedShards):
        known = (self.previous_state or {}).get("cutoffs", {})
        documents = shards.read([cols.SHARD, cols.ROW, cols.ID, *self.index_columns])
        gamma = sketch.log_bucket_base(self.config.relative_accuracy)
        todo = [entry for entry in self.entries if entry.name not in known]
        counts = (
            documents.map_batches(
                _score_counts,
                fn_kwargs={"gamma": gamma, "first_new": shards.first_new_node, "entries": _columns(todo)},
                batch_size=None,
                batch_format="pyarrow",
            ).take_all()
            if todo
            else []
        )
        cutoffs = dict(known)
        for entry in todo:
            percentiles = [p for p in (entry.min_percentile, entry.max_percentile) if p is not None]
            found = sketch.percentile_values([r for r in counts if r[sketch.GROUP] == entry.name], gamma, percentiles)
            if entry.name not in found:  # no document scored: nothing to cut, nothing kept for later
                continue
            values = iter(float(o / (1 + o)) for o in found[entry.name])
            cutoffs[entry.name] = {
                "min": next(values) if entry.min_percentile is not None else None,
                "max": next(values) if entry.max_percentile is not None else None,
            }
        self.state = {
            "cutoffs": cutoffs,
            "percentiles": {e.name: [e.min_percentile, e.max_percentile] for e in self.entries},
        }
        return documents.map_batches(
            _band_removals,
            fn_kwargs={"cutoffs": cutoffs, "entries": _columns(self.entries)},
            batch_format="pyarrow",
        )


def _columns(entries: list[ClassifierEntry]) -> list[tuple[str, str]]:
    return [(entry.name, entry.score_column) for entry in entries]


def _score_counts(block: pa.Table, gamma: float, first_new: int, entries: list[tuple[str, str]]) -> pa.Table:
    new = block.filter(pc.greater_equal(block.column(NODE), first_new))
    parts = []
    for name, column in entries:
        scores = new.column(column).drop_null().to_numpy(zero_copy_only=False)
        parts.append(sketch.bucket_counts(np.full(len(scores), name, dtype=object), odds(scores), gamma))
    return pa.concat_tables(parts)


def _band_removals(block: pa.Table, cutoffs: dict, entries: list[tuple[str, str]]) -> pa.Table:
    """A document outside several bands is removed for the first classifier's."""
    reasons = np.full(block.num_rows, None, dtype=object)
    for name, column in entries:
        cut = cutoffs.get(name)
        if cut is None:
            continue
        raw = block.column(column)
        scores = pc.fill_null(raw, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        open_ = np.array([r is None for r in reasons], bool)
        if cut["min"] is not None:
            below = open_ & (scores < cut["min"])  # NaN (no score) compares false: kept
            reasons[below] = below_reason(name)
            open_ &= ~below
        if cut["max"] is not None:
            reasons[open_ & (scores > cut["max"])] = above_reason(name)
    remove = np.array([r is not None for r in reasons], bool)
    removed = block.filter(pa.array(remove))
    return removal_table(
        removed.column(cols.SHARD),
        removed.column(cols.ROW),
        removed.column(cols.ID),
        "classifier",
        pa.array(reasons[remove].tolist(), pa.string()),
    )
