"""Connected components of an edge list on Ray Data, with no step that gathers the graph.

Alternating Large-Star and Small-Star (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014), which converges in O(log^2 n) rounds even on long
chains. Every node ends pointing at the smallest node of its component. Each step
groups edges by their source node with a sort (equal keys land in one block) and
handles the groups of a block vectorized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

SRC = "src"
DST = "dst"
EDGE_SCHEMA = pa.schema([(SRC, pa.int64()), (DST, pa.int64())])
MAX_ROUNDS = 64


def _edges(src: np.ndarray, dst: np.ndarray) -> pa.Table:
    return pa.table({SRC: pa.array(src, pa.int64()), DST: pa.array(dst, pa.int64())}, schema=EDGE_SCHEMA)


def _grouped(block: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (src, dst) pairs sorted by src, the start of each src group, and each row's group."""
    src = block.column(SRC).to_numpy()
    dst = block.column(DST).to_numpy()
    pairs = np.unique(np.stack([src, dst], axis=1), axis=0) if len(src) else np.zeros((0, 2), np.int64)
    src, dst = pairs[:, 0], pairs[:, 1]
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]]) if len(src) else np.zeros(0, np.int64)
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(src)]))
    return src, dst, starts, group


def _large_star(block: pa.Table) -> pa.Table:
    """Input: both directions of every edge. For node u with neighbours N(u) and
    m = min(N(u) + u): link every neighbour v > u to m."""
    src, dst, starts, group = _grouped(block)
    if len(src) == 0:
        return EDGE_SCHEMA.empty_table()
    low = np.minimum(np.minimum.reduceat(dst, starts), src[starts])[group]
    keep = dst > src
    return _edges(dst[keep], low[keep])


def _small_star(block: pa.Table) -> pa.Table:
    """Input: edges oriented from the larger to the smaller node. For node u with smaller
    neighbours N(u) and m = min(N(u) + u): link u and every v in N(u) to m."""
    src, dst, starts, group = _grouped(block)
    if len(src) == 0:
        return EDGE_SCHEMA.empty_table()
    low = np.minimum(np.minimum.reduceat(dst, starts), src[starts])
    others = dst != low[group]
    own = src[starts] != low
    return _edges(np.r_[dst[others], src[starts][own]], np.r_[low[group][others], low[own]])


def _both_directions(block: pa.Table) -> pa.Table:
    src, dst = block.column(SRC).to_numpy(), block.column(DST).to_numpy()
    keep = src != dst
    return _edges(np.r_[src[keep], dst[keep]], np.r_[dst[keep], src[keep]])


def _larger_first(block: pa.Table) -> pa.Table:
    src, dst = block.column(SRC).to_numpy(), block.column(DST).to_numpy()
    keep = src != dst
    return _edges(np.maximum(src, dst)[keep], np.minimum(src, dst)[keep])


def _checksum(block: pa.Table) -> pa.Table:
    pairs = np.unique(np.stack([block.column(SRC).to_numpy(), block.column(DST).to_numpy()], axis=1), axis=0)
    with np.errstate(over="ignore"):
        mixed = pairs[:, 0].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ pairs[:, 1].astype(np.uint64)
        mixed = mixed * np.uint64(0xBF58476D1CE4E5B9)
        total = int(np.sum(mixed, dtype=np.uint64))
    return pa.table({"count": [len(pairs)], "sum": pa.array([total], pa.uint64())})


def _by_source(edges: "ray.data.Dataset", fn) -> "ray.data.Dataset":
    return edges.sort(SRC).map_batches(fn, batch_size=None, batch_format="pyarrow")


def connected_components(edges: "ray.data.Dataset") -> "ray.data.Dataset":
    """(node, component) for every node that is not the smallest of its component.

    ``edges`` has int64 columns ``src`` and ``dst``; direction and duplicates don't matter.
    The result has columns ``src`` (node) and ``dst`` (the smallest node of its component).
    """
    previous = None
    current = edges.map_batches(_larger_first, batch_format="pyarrow").materialize()
    if current.count() == 0:
        return current
    for _ in range(MAX_ROUNDS):
        current = _by_source(current.map_batches(_both_directions, batch_format="pyarrow"), _large_star)
        current = _by_source(current.map_batches(_larger_first, batch_format="pyarrow"), _small_star)
        # Deduplicate globally (a sort puts equal pairs in one block) and fingerprint the edge set.
        current = current.sort([SRC, DST]).map_batches(_distinct, batch_size=None, batch_format="pyarrow").materialize()
        sums = current.map_batches(_checksum, batch_size=None, batch_format="pyarrow").take_all()
        fingerprint = (sum(r["count"] for r in sums), sum(r["sum"] for r in sums) % (1 << 64))
        if fingerprint == previous:
            return current
        previous = fingerprint
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _distinct(block: pa.Table) -> pa.Table:
    if block.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    pairs = np.unique(np.stack([block.column(SRC).to_numpy(), block.column(DST).to_numpy()], axis=1), axis=0)
    return _edges(pairs[:, 0], pairs[:, 1])
