"""The global half of the perplexity stage: head, middle and tail per language, from a
mergeable sketch of the whole run's perplexities."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, AnnotatedShards
from pipeline.core.columns import LANG, PERPLEXITY
from pipeline.stages.base import GlobalStage, removal_table

PERPLEXITY_BUCKET = "perplexity_bucket"


class PerplexityBuckets(GlobalStage):
    """Splits each language's documents into head, middle and tail at percentiles of the
    whole run's perplexities, and removes the buckets not kept.

    The percentiles come from a DDSketch-style sketch (Masson, Rim and Lee 2019): counts of
    documents per logarithmic bucket of relative width ``relative_accuracy``. Counts per
    block add up exactly, so the cut points are the same however the run is split into
    blocks or workers (randomized sketches such as KLL are not), and each is within
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
        gamma = log_bucket_base(self.config.relative_accuracy)
        counts = documents.map_batches(
            bucket_counts,
            fn_kwargs={"gamma": gamma, "first_new": shards.first_new_node, "skip": list(known)},
            batch_size=None,
            batch_format="pyarrow",
        ).take_all()
        cutoffs = dict(known) | percentile_cutoffs(counts, gamma, self.config.bucket_percentiles)
        self.state = {"cutoffs": cutoffs, "percentiles": list(self.config.bucket_percentiles)}
        dropped = [b for b in ("head", "middle", "tail") if b not in self.config.keep_buckets]
        return documents.map_batches(
            _bucket_removals, fn_kwargs={"cutoffs": cutoffs, "dropped": dropped}, batch_format="pyarrow"
        )


def log_bucket_base(relative_accuracy: float) -> float:
    return (1 + relative_accuracy) / (1 - relative_accuracy)


def bucket_counts(block: pa.Table, gamma: float, first_new: int, skip: list[str]) -> pa.Table:
    """(lang, bucket, count) for this block's new documents with a perplexity."""
    new = block.filter(pc.greater_equal(block.column(NODE), first_new))
    langs = new.column(LANG).to_numpy(zero_copy_only=False)
    values = new.column(PERPLEXITY).to_numpy(zero_copy_only=False)
    has_lang = pc.is_valid(new.column(LANG)).to_numpy(zero_copy_only=False)
    scored = has_lang & ~np.isnan(values) & ~np.isin(langs, skip)
    langs, buckets = langs[scored], np.ceil(np.log(values[scored]) / np.log(gamma)).astype(np.int64)
    table = pa.table({"lang": pa.array(langs, pa.string()), "bucket": pa.array(buckets, pa.int64())})
    grouped = table.group_by(["lang", "bucket"]).aggregate([("bucket", "count")])
    return grouped.rename_columns(["lang", "bucket", "count"])


def percentile_cutoffs(rows: list[dict], gamma: float, percentiles: tuple[float, float]) -> dict[str, list[float]]:
    """Per language, the value at each percentile: the representative value of the bucket
    that holds that rank."""
    totals: dict[str, dict[int, int]] = {}
    for row in rows:
        per_bucket = totals.setdefault(row["lang"], {})
        per_bucket[row["bucket"]] = per_bucket.get(row["bucket"], 0) + row["count"]
    cutoffs = {}
    for lang, per_bucket in sorted(totals.items()):
        buckets = np.array(sorted(per_bucket))
        cumulative = np.cumsum([per_bucket[b] for b in buckets])
        ranks = [p / 100 * (cumulative[-1] - 1) for p in percentiles]
        at = np.searchsorted(cumulative, np.array(ranks), side="right")
        cutoffs[lang] = [float(2 * gamma**b / (gamma + 1)) for b in buckets[at]]
    return cutoffs


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
