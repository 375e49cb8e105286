"""Percentiles of a whole run from a mergeable, deterministic sketch.

A DDSketch-style sketch (Masson, Rim and Lee 2019): counts of values per logarithmic
bucket of relative width ``relative_accuracy``, per group (a language, a classifier).
Counts per block add up exactly, so the cut points are the same however the run is split
into blocks or workers (randomized sketches such as KLL are not), and each is within
``relative_accuracy`` of the true percentile's value. Values must be positive.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

GROUP, BUCKET, COUNT = "group", "bucket", "count"


def log_bucket_base(relative_accuracy: float) -> float:
    return (1 + relative_accuracy) / (1 - relative_accuracy)


LENGTH_GAMMA = log_bucket_base(0.05)
"""Document lengths in the report (characters, tokens): buckets about 10% wide."""


def bucket_counts(groups: np.ndarray, values: np.ndarray, gamma: float) -> pa.Table:
    """(group, bucket, count) of the positive, finite ``values``, each in its ``groups`` entry."""
    usable = np.isfinite(values) & (values > 0)
    buckets = np.ceil(np.log(values[usable]) / np.log(gamma)).astype(np.int64)
    table = pa.table({GROUP: pa.array(groups[usable], pa.string()), BUCKET: pa.array(buckets, pa.int64())})
    grouped = table.group_by([GROUP, BUCKET]).aggregate([(BUCKET, "count")])
    return grouped.rename_columns([GROUP, BUCKET, COUNT])


def percentile_values(rows: list[dict], gamma: float, percentiles: tuple[float, ...]) -> dict[str, list[float]]:
    """Per group, the value at each percentile: the representative value of the bucket that
    holds that rank. ``rows`` are ``bucket_counts`` rows of every block."""
    totals: dict[str, dict[int, int]] = {}
    for row in rows:
        per_bucket = totals.setdefault(row[GROUP], {})
        per_bucket[row[BUCKET]] = per_bucket.get(row[BUCKET], 0) + row[COUNT]
    return {
        group: values_at([(bucket_value(b, gamma), per_bucket[b]) for b in sorted(per_bucket)], percentiles)
        for group, per_bucket in sorted(totals.items())
    }


def values_at(counted: list[tuple[float, int]], percentiles: tuple[float, ...]) -> list[float]:
    """The value at each percentile of (value, count) pairs in value order: the value whose
    count holds that rank."""
    values = np.array([v for v, _ in counted], np.float64)
    cumulative = np.cumsum([n for _, n in counted])
    ranks = [p / 100 * (cumulative[-1] - 1) for p in percentiles]
    return [float(v) for v in values[np.searchsorted(cumulative, np.array(ranks), side="right")]]


def add_counts(into: dict[int, int], values: np.ndarray, gamma: float) -> None:
    """Count the positive, finite ``values`` into one group's ``{bucket: count}``."""
    usable = values[np.isfinite(values) & (values > 0)]
    if len(usable):
        buckets, counts = np.unique(np.ceil(np.log(usable) / np.log(gamma)).astype(np.int64), return_counts=True)
        for bucket, n in zip(buckets.tolist(), counts.tolist()):
            into[bucket] = into.get(bucket, 0) + n


def merged_counts(parts: list[dict]) -> dict[int, int]:
    """``{bucket: count}`` of several parts (JSON gives the buckets as strings)."""
    out: dict[int, int] = {}
    for part in parts:
        for bucket, n in part.items():
            out[int(bucket)] = out.get(int(bucket), 0) + n
    return dict(sorted(out.items()))


def bucket_value(bucket: int, gamma: float) -> float:
    """The representative value of a bucket."""
    return float(2 * gamma**bucket / (gamma + 1))
