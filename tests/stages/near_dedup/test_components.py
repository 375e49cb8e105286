"""Distributed connected components equal a single-process union-find on the same edges."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline.stages.near_dedup.components import DST, SRC, connected_components
from tests.helpers.graphs import union_find_components

pytestmark = pytest.mark.usefixtures("ray_local")


def run(edges, blocks=4):
    import ray.data

    src = np.array([e[0] for e in edges], np.int64)
    dst = np.array([e[1] for e in edges], np.int64)
    table = pa.table({SRC: src, DST: dst})
    step = max(1, len(edges) // blocks)
    dataset = ray.data.from_arrow([table.slice(i, step) for i in range(0, len(edges), step)])
    return {row[SRC]: row[DST] for row in connected_components(dataset).take_all()}


def test_long_chain_in_shuffled_order():
    rng = np.random.default_rng(0)
    order = rng.permutation(400) * 1000 + 7  # large, non-contiguous ids in a random chain order
    edges = [(int(order[i]), int(order[i + 1])) for i in range(len(order) - 1)]
    rng.shuffle(edges)
    assert run(edges) == union_find_components(edges)


def test_random_graph_with_duplicates_self_loops_and_stars():
    rng = np.random.default_rng(1)
    edges = [(int(a), int(b)) for a, b in rng.integers(0, 3000, size=(2500, 2))]
    edges += [(5000, 5000 + k) for k in range(1, 200)]  # one big star
    edges += edges[:300] + [(v, u) for u, v in edges[:300]] + [(9999, 9999)]
    result = run(edges)
    expected = union_find_components(edges)
    assert result == expected
    assert 9999 not in result


def test_two_chains_meet_in_the_middle():
    edges = [(i, i + 1) for i in range(0, 200)] + [(1000 + i, 1000 + i + 1) for i in range(200)] + [(100, 1100)]
    assert run(edges) == union_find_components(edges)
