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

from pipeline.core.blocks import right_sized, sorted_by

if TYPE_CHECKING:
    import ray.data

SRC = "src"
DST = "dst"
EDGE_SCHEMA = pa.schema([(SRC, pa.int64()), (DST, pa.int64())])
_UNSETTLED = "unsettled"
_FLAGGED_SCHEMA = pa.schema([*EDGE_SCHEMA, (_UNSETTLED, pa.int64())])
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
    m = min(N(u) + u): link every neighbour v > u to m.

    Also flags whether the edges already form stars around component minima: each node is
    then either a centre (all neighbours larger) or a leaf (one neighbour, smaller). A node
    that is neither flags itself with a self-loop, which the next step drops."""
    src, dst, starts, group = _grouped(block)
    if len(src) == 0:
        return _FLAGGED_SCHEMA.empty_table()
    low = np.minimum(np.minimum.reduceat(dst, starts), src[starts])[group]
    keep = dst > src
    sizes = np.diff(np.r_[starts, len(src)])
    centre = np.minimum.reduceat(dst, starts) > src[starts]
    leaf = (sizes == 1) & ~centre
    unsettled = src[starts][~(centre | leaf)]
    return pa.table(
        {
            SRC: pa.array(np.r_[dst[keep], unsettled], pa.int64()),
            DST: pa.array(np.r_[low[keep], unsettled], pa.int64()),
            _UNSETTLED: pa.array(np.r_[np.zeros(keep.sum(), np.int64), np.ones(len(unsettled), np.int64)]),
        },
        schema=_FLAGGED_SCHEMA,
    )


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


def _by_source(edges: ray.data.Dataset, fn) -> ray.data.Dataset:
    return sorted_by(edges, SRC).map_batches(fn, batch_size=None, batch_format="pyarrow")


def connected_components(edges: ray.data.Dataset) -> ray.data.Dataset:
    """(node, component) for every node that is not the smallest of its component.

    ``edges`` has int64 columns ``src`` and ``dst``; direction and duplicates don't matter.
    The result has columns ``src`` (node) and ``dst`` (the smallest node of its component),
    one row per node.
    """
    current = right_sized(edges.map_batches(_larger_first, batch_format="pyarrow"))
    if current.count() == 0:
        return current
    for _ in range(MAX_ROUNDS):
        large = _by_source(current.map_batches(_both_directions, batch_format="pyarrow"), _large_star).materialize()
        if not large.sum(_UNSETTLED):
            # Every node already pointed at its component's minimum; large-star kept those
            # edges, once each.
            return large.map_batches(_edges_only, batch_format="pyarrow")
        current = _by_source(large.map_batches(_larger_first, batch_format="pyarrow"), _small_star).materialize()
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _edges_only(block: pa.Table) -> pa.Table:
    return block.select([SRC, DST])


def distinct_edges(block: pa.Table) -> pa.Table:
    if block.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    pairs = np.unique(np.stack([block.column(SRC).to_numpy(), block.column(DST).to_numpy()], axis=1), axis=0)
    return _edges(pairs[:, 0], pairs[:, 1])
