"""Why each near duplicate goes: per connected component, its survivor and, for every other
member, the verified edge that links it in.

The links form a tree rooted at the survivor, built breadth first over the component's
verified edges: a member's ``matched`` is its neighbour on a shortest chain of verified
matches to the survivor (the survivor itself when the two matched directly), the most
similar such neighbour, then the first. Following ``matched`` from any member reaches the
survivor, every step an edge at or above the threshold, so each removal is explained by the
one edge recorded with it.

Two sorts bring a component's rows into one block: members and edges by node, so that each
edge learns its component, then everything by component.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.stages.near_dedup.components import DST, SRC

COMPONENT = "component"
SIMILARITY = "similarity"
RANK = "rank"
"""A member's place in its component's choice of survivor: the smaller, the better."""
MATCHED = "matched"
SCORED_EDGE_SCHEMA = pa.schema([(SRC, pa.int64()), (DST, pa.int64()), (SIMILARITY, pa.float64())])
"""Verified edges with their similarity (NaN when unverified)."""
ROW_SCHEMA = pa.schema([(COMPONENT, pa.int64()), *SCORED_EDGE_SCHEMA, (RANK, pa.float64())])
"""A member (``dst`` -1: node ``src`` of ``component``, ranked ``rank``) or an edge."""
LINK_SCHEMA = pa.schema([(SRC, pa.int64()), (DST, pa.int64()), (MATCHED, pa.int64()), (SIMILARITY, pa.float64())])
"""Per member but the survivor: node ``src``, survivor ``dst``, the node it was ``matched``
to and their ``similarity``."""
_MEMBER = -1


def members(components: pa.Table) -> pa.Table:
    """Member rows of (node, smallest node of its component) rows, the smallest nodes
    included (ranked 0)."""
    node, root = components.column(SRC).to_numpy(), components.column(DST).to_numpy()
    roots = np.unique(root)
    n = len(node) + len(roots)
    return pa.table(
        {
            COMPONENT: pa.array(np.r_[root, roots], pa.int64()),
            SRC: pa.array(np.r_[node, roots], pa.int64()),
            DST: pa.array(np.full(n, _MEMBER), pa.int64()),
            SIMILARITY: pa.array(np.full(n, np.nan)),
            RANK: pa.array(np.zeros(n)),
        },
        schema=ROW_SCHEMA,
    )


def edge_rows(edges: pa.Table) -> pa.Table:
    """Scored edges as rows whose component is not known yet."""
    n = edges.num_rows
    return pa.table(
        {
            COMPONENT: pa.array(np.full(n, _MEMBER), pa.int64()),
            SRC: edges.column(SRC),
            DST: edges.column(DST),
            SIMILARITY: edges.column(SIMILARITY),
            RANK: pa.array(np.full(n, np.nan)),
        },
        schema=ROW_SCHEMA,
    )


def with_components(block: pa.Table) -> pa.Table:
    """Sorted by node: every edge gets the component of its ``src``, which has a member row
    in the same block."""
    if block.num_rows == 0:
        return ROW_SCHEMA.empty_table()
    component, src, dst = (block.column(c).to_numpy() for c in (COMPONENT, SRC, DST))
    is_member = dst == _MEMBER
    known, index = np.unique(src[is_member], return_index=True)
    found = np.searchsorted(known, src[~is_member])
    if len(found) and (len(known) == 0 or np.any(known[np.minimum(found, len(known) - 1)] != src[~is_member])):
        raise RuntimeError("near dedup: an edge's node belongs to no connected component")
    component = component.copy()
    component[~is_member] = component[is_member][index][found]
    return block.set_column(0, ROW_SCHEMA.field(COMPONENT), pa.array(component, pa.int64()))


def component_links(block: pa.Table, first_new: int) -> pa.Table:
    """Sorted by component: each component's survivor, and a link for every other member.

    The survivor is a member kept by an earlier run (node below ``first_new``), then the
    smallest ``rank``, then the first node."""
    if block.num_rows == 0:
        return LINK_SCHEMA.empty_table()
    component, src, dst = (block.column(c).to_numpy() for c in (COMPONENT, SRC, DST))
    similarity, rank = block.column(SIMILARITY).to_numpy(), block.column(RANK).to_numpy()
    is_member = dst == _MEMBER
    m_component, m_node, m_rank = component[is_member], src[is_member], rank[is_member]
    order = np.lexsort((m_node, m_rank, m_node >= first_new, m_component))
    m_component, m_node = m_component[order], m_node[order]
    first = np.r_[True, m_component[1:] != m_component[:-1]]
    survivor_of = m_node[np.maximum.accumulate(np.where(first, np.arange(len(m_node)), 0))]
    nodes, at = np.unique(m_node, return_index=True)
    survivor = survivor_of[at]
    parent, link_similarity = _breadth_first_tree(
        len(nodes),
        np.searchsorted(nodes, np.unique(m_node[first])),
        np.searchsorted(nodes, src[~is_member]),
        np.searchsorted(nodes, dst[~is_member]),
        similarity[~is_member],
    )
    linked = nodes != survivor
    if np.any(parent[linked] < 0):
        raise RuntimeError("near dedup: a member of a component has no verified edge to the rest of it")
    return pa.table(
        {
            SRC: pa.array(nodes[linked]),
            DST: pa.array(survivor[linked]),
            MATCHED: pa.array(nodes[parent[linked]]),
            SIMILARITY: pa.array(link_similarity[linked]),
        },
        schema=LINK_SCHEMA,
    )


def _breadth_first_tree(
    n: int, roots: np.ndarray, a: np.ndarray, b: np.ndarray, similarity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Over nodes 0..n-1 and undirected edges (a, b): each node's parent (-1 for roots and
    unreached nodes) in a breadth-first forest from ``roots``, and the similarity of that
    edge. A node reached from several nodes of one level takes the most similar edge, then
    the smallest parent. One level costs the edges of its frontier."""
    ends = np.r_[a, b]
    others = np.r_[b, a]
    weights = np.r_[similarity, similarity]
    order = np.lexsort((others, ends))
    others, weights = others[order], weights[order]
    starts = np.searchsorted(ends[order], np.arange(n + 1))
    parent = np.full(n, -1, np.int64)
    link = np.full(n, np.nan)
    reached = np.zeros(n, bool)
    reached[roots] = True
    frontier = np.asarray(roots, np.int64)
    preference = -np.nan_to_num(weights, nan=0.0)
    while len(frontier):
        counts = starts[frontier + 1] - starts[frontier]
        total = int(counts.sum())
        if total == 0:
            break
        offsets = np.repeat(starts[frontier] - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(total)
        origin, target = np.repeat(frontier, counts), others[offsets]
        fresh = ~reached[target]
        origin, target, offsets = origin[fresh], target[fresh], offsets[fresh]
        if len(target) == 0:
            break
        best = np.lexsort((origin, preference[offsets], target))
        best = best[np.r_[True, target[best][1:] != target[best][:-1]]]
        frontier = target[best]
        parent[frontier], link[frontier] = origin[best], weights[offsets[best]]
        reached[frontier] = True
    return parent, link
