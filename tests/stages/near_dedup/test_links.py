"""Each near duplicate's link: the verified edge that ties it to its component, a tree
rooted at the survivor."""

import numpy as np
import pyarrow as pa

from pipeline.stages.near_dedup.components import DST, SRC
from pipeline.stages.near_dedup.links import (
    COMPONENT,
    MATCHED,
    RANK,
    SCORED_EDGE_SCHEMA,
    SIMILARITY,
    component_links,
    edge_rows,
    members,
    with_components,
)
from tests.helpers.graphs import union_find_components


def links_of(edges, ranks=None, first_new=0):
    """The two per-block steps on one block each: (node -> (survivor, matched, similarity))."""
    table = pa.table(
        {
            SRC: pa.array([e[0] for e in edges], pa.int64()),
            DST: pa.array([e[1] for e in edges], pa.int64()),
            SIMILARITY: pa.array([e[2] for e in edges], pa.float64()),
        },
        schema=SCORED_EDGE_SCHEMA,
    )
    components = union_find_components([(a, b) for a, b, _ in edges])
    member_rows = members(
        pa.table({SRC: pa.array(list(components), pa.int64()), DST: pa.array(list(components.values()), pa.int64())})
    )
    if ranks:
        rank = [ranks.get(n, 0.0) for n in member_rows.column(SRC).to_pylist()]
        member_rows = member_rows.set_column(4, RANK, pa.array(rank, pa.float64()))
    rows = pa.concat_tables([member_rows, edge_rows(table)]).sort_by(SRC)
    rows = with_components(rows).sort_by(COMPONENT)
    out = component_links(rows, first_new)
    return {r[SRC]: (r[DST], r[MATCHED], r[SIMILARITY]) for r in out.to_pylist()}


def test_chain_links_each_document_to_the_one_it_matched():
    """A~B (0.9) and B~C (0.85), A and C below the threshold (no edge): C goes for A, matched to B."""
    a, b, c = 10, 20, 30
    assert links_of([(b, a, 0.9), (c, b, 0.85)]) == {b: (a, a, 0.9), c: (a, b, 0.85)}


def test_a_direct_match_to_the_survivor_wins_over_a_stronger_chain():
    a, b, c = 1, 2, 3
    assert links_of([(b, a, 0.95), (c, b, 0.99), (c, a, 0.81)]) == {b: (a, a, 0.95), c: (a, a, 0.81)}


def test_among_equally_short_chains_the_most_similar_neighbour_then_the_first():
    s, x, y, z, w = 1, 2, 3, 4, 5
    links = links_of([(x, s, 0.9), (y, s, 0.9), (z, x, 0.82), (z, y, 0.88), (w, x, 0.85), (w, y, 0.85)])
    assert links[z] == (s, y, 0.88)
    assert links[w] == (s, x, 0.85)


def test_survivor_by_rank_is_the_root_of_the_links():
    """With ``survivor: longest`` the best-ranked member is the root; the chain reverses."""
    a, b, c = 1, 2, 3
    links = links_of([(b, a, 0.9), (c, b, 0.85)], ranks={c: -100.0, a: -10.0, b: -50.0})
    assert links == {b: (c, c, 0.85), a: (c, b, 0.9)}


def test_a_document_kept_by_an_earlier_run_stays_the_survivor():
    a, b, c = 1, 2, 3
    links = links_of([(b, a, 0.9), (c, b, 0.85)], ranks={c: -100.0}, first_new=2)
    assert set(links) == {b, c} and links[c] == (a, b, 0.85)


def test_random_graphs_every_member_reaches_its_survivor_through_edges():
    """Property on random forests of components: one link per non-survivor member, each an
    edge of the graph with that edge's similarity; following links ends at the survivor."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 60))
        pairs = {tuple(sorted(map(int, p))) for p in rng.integers(0, n, size=(n, 2)) if p[0] != p[1]}
        edges = [(b * 7 + 3, a * 7 + 3, round(float(rng.uniform(0.8, 1.0)), 3)) for a, b in pairs]
        if not edges:
            continue
        weight = {frozenset((u, v)): s for u, v, s in edges}
        expected = union_find_components([(u, v) for u, v, _ in edges])
        links = links_of(edges)
        assert {node: survivor for node, (survivor, _, _) in links.items()} == expected, trial
        for node, (survivor, matched, similarity) in links.items():
            assert weight[frozenset((node, matched))] == similarity
            seen = {node}
            while matched != survivor:
                matched = links[matched][1]
                assert matched not in seen
                seen.add(matched)


def test_links_do_not_depend_on_the_order_of_rows_in_a_block():
    rng = np.random.default_rng(5)
    pairs = {tuple(sorted(map(int, p))) for p in rng.integers(0, 40, size=(60, 2)) if p[0] != p[1]}
    edges = [(b, a, round(float(rng.uniform(0.8, 1.0)), 2)) for a, b in pairs]
    table = pa.table(
        {SRC: [e[0] for e in edges], DST: [e[1] for e in edges], SIMILARITY: [e[2] for e in edges]},
        schema=SCORED_EDGE_SCHEMA,
    )
    components = union_find_components([(a, b) for a, b, _ in edges])
    rows = pa.concat_tables(
        [
            members(
                pa.table(
                    {SRC: pa.array(list(components), pa.int64()), DST: pa.array(list(components.values()), pa.int64())}
                )
            ),
            edge_rows(table),
        ]
    )
    outputs = []
    for seed in range(4):
        shuffled = rows.take(pa.array(np.random.default_rng(seed).permutation(rows.num_rows)))
        outputs.append(component_links(with_components(shuffled), 0))
    assert all(o.equals(outputs[0]) for o in outputs)
