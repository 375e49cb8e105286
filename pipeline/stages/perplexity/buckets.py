"""The global half of the perplexity stage: head, middle and tail per language, from a
mergeable sketch of the whole run's perplexities."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import sketch
from pipeline.core.annotated import NODE, AnnotatedShards
from pipeline.core.columns import LANG, PERPLEXITY
from pipeline.stages.base import GlobalStage, removal_table

PERPLEXITY_BUCKET = "perplexity_bucket"


class PerplexityBuckets(GlobalStage):
    """Splits each language's documents into head, middle and tail at percentiles of the
    whole run's perplexities, and removes the buckets not kept.

    The percentiles come from the run-wide sketch of ``pipeline.core.sketch``: the cut points
    are the same however the run is split into blocks or workers, and each is within
    ``relative_accuracy`` of the true percentile's value.

    Cut points, once computed for a language, are kept in the dedup index: later runs on a
    grown input bucket new documents with the same cut points, so a document's bucket does
    not depend on which delivery it came in."""

    name = "perplexity"
    index_columns = (LANG, PERPLEXITY)

    def annotate_kept(self, docs: pa.Table) -> pa.Table:
        cutoffs = (self.previous_state or {}).get("cutoffs", {})
        buckets = buckets_of(docs, cutoffs) if docs.num_rows else []
        return docs.append_column(PERPLEXITY_BUCKET, pa.array(list(buckets), pa.string()))

    def find_removals(self, shards: AnnotatedShards):
        known = (self.previous_state or {}).get("cutoffs", {})
        documents = shards.read([cols.SHARD, cols.ROW, cols.ID, LANG, PERPLEXITY])
        gamma = sketch.log_bucket_base(self.config.relative_accuracy)
        counts = documents.map_batches(
            bucket_counts,
            fn_kwargs={"gamma": gamma, "first_new": shards.first_new_node, "skip": list(known)},
            batch_size=None,
            batch_format="pyarrow",
        ).take_all()
        cutoffs = dict(known) | sketch.percentile_values(counts, gamma, self.config.bucket_percentiles)
        self.state = {"cutoffs": cutoffs, "percentiles": list(self.config.bucket_percentiles)}
        dropped = [b for b in ("head", "middle", "tail") if b not in self.config.keep_buckets]
        return documents.map_batches(
            _bucket_removals, fn_kwargs={"cutoffs": cutoffs, "dropped": dropped}, batch_format="pyarrow"
        )


def bucket_counts(block: pa.Table, gamma: float, first_new: int, skip: list[str]) -> pa.Table:
    """The sketch's (group = language, bucket, count) for this block's new documents with a perplexity."""
    new = block.filter(pc.greater_equal(block.column(NODE), first_new))
    langs = new.column(LANG).to_numpy(zero_copy_only=False)
    values = new.column(PERPLEXITY).to_numpy(zero_copy_only=False).astype(np.float64)
    has_lang = pc.is_valid(new.column(LANG)).to_numpy(zero_copy_only=False)
    scored = has_lang & ~np.isnan(values) & ~np.isin(langs, skip)
    return sketch.bucket_counts(langs[scored], values[scored], gamma)


def buckets_of(block: pa.Table, cutoffs: dict[str, list[float]]) -> np.ndarray:
    """head, middle, tail or None (no language, no perplexity) per row."""
    langs = block.column(LANG).to_numpy(zero_copy_only=False)
    values = block.column(PERPLEXITY).to_numpy(zero_copy_only=False).astype(np.float64)
    bucket = np.full(block.num_rows, None, dtype=object)
    for lang, (head_below, tail_from) in cutoffs.items():
        mine = (langs == lang) & ~np.isnan(values)
        bucket[mine & (values < head_below)] = "head"
        bucket[mine & (values >= head_below) & (values < tail_from)] = "middle"
        bucket[mine & (values >= tail_from)] = "tail"
    return bucket


def _bucket_removals(block: pa.Table, cutoffs: dict[str, list[float]], dropped: list[str]) -> pa.Table:
    bucket = buckets_of(block, cutoffs)
    remove = np.isin(bucket, dropped) if dropped else np.zeros(block.num_rows, bool)
    removed = block.filter(pa.array(remove))
    reasons = pa.array([f"perplexity_{b}" for b in bucket[remove]], pa.string())
    return removal_table(
        removed.column(cols.SHARD), removed.column(cols.ROW), removed.column(cols.ID), "perplexity", reasons
    )
