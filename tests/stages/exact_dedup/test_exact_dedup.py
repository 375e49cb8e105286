"""Exact dedup: the normalized-text hash, and one survivor per hash across blocks."""

import numpy as np
import pyarrow as pa

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, node_ids, shard_ordinals
from pipeline.stages.exact_dedup import EXACT_HASH, ExactDedupConfig, ExactDedupKeys, duplicates_in_block
from tests.helpers.documents import docs_table


def test_exact_hash_ignores_case_and_whitespace_only():
    stage = ExactDedupKeys(ExactDedupConfig())
    stage.setup()
    kept, rejected = stage(docs_table(["Hello  World", " hello world\n", "hello, world", "ｈｅｌｌｏ world"]))
    hashes = kept.column(EXACT_HASH).to_pylist()
    assert rejected.num_rows == 0
    assert hashes[0] == hashes[1] == hashes[3]  # NFKC folds full-width letters
    assert hashes[2] != hashes[0]


def _reference_duplicates(rows):
    """Single-process reference: first (shard, row) of each hash survives."""
    survivors, removed = {}, {}
    for shard, row, doc_id, h in sorted(rows, key=lambda r: (r[3], r[0], r[1])):
        if h in survivors:
            removed[(shard, row)] = survivors[h]
        else:
            survivors[h] = doc_id
    return removed


def test_duplicates_in_block_matches_reference():
    rng = np.random.default_rng(3)
    rows = [(f"s{rng.integers(3)}", int(i), f"id{i}", int(rng.integers(40))) for i in range(300)]
    block = pa.table(
        {
            cols.SHARD: [r[0] for r in rows],
            cols.ROW: [r[1] for r in rows],
            cols.ID: [r[2] for r in rows],
            EXACT_HASH: pa.array([r[3] for r in rows], pa.int64()),
        }
    )
    nodes = node_ids(shard_ordinals(block.column(cols.SHARD), ["s0", "s1", "s2"]), block.column(cols.ROW).to_numpy())
    out = duplicates_in_block(block.append_column(NODE, pa.array(nodes)))
    got = {(r[cols.SHARD], r[cols.ROW]): r[cols.DUPLICATE_OF] for r in out.to_pylist()}
    assert got == _reference_duplicates(rows)
    assert set(out.column(cols.REJECT_REASON).to_pylist()) == {"exact_duplicate"}


def test_exact_duplicates_across_many_blocks_keep_one_per_hash(ray_local, tmp_path):
    """Rows of one hash can arrive in many blocks; the sort must bring them together."""
    import pyarrow.parquet as pq

    from pipeline.core.annotated import AnnotatedShards
    from pipeline.stages.exact_dedup import ExactDuplicates

    uris = {}
    for shard in ("a", "b", "c"):
        n = 2000
        uris[shard] = str(tmp_path / f"{shard}.parquet")
        pq.write_table(
            pa.table(
                {
                    cols.SHARD: [shard] * n,
                    cols.ROW: pa.array(range(n), pa.int64()),
                    cols.ID: [f"{shard}{i}" for i in range(n)],
                    EXACT_HASH: pa.array([i % 2 for i in range(n)], pa.int64()),
                }
            ),
            uris[shard],
            row_group_size=100,
        )
    removed = ExactDuplicates(ExactDedupConfig()).find_removals(AnnotatedShards(uris)).take_all()
    assert len(removed) == 6000 - 2
    assert {r[cols.DUPLICATE_OF] for r in removed} == {"a0", "a1"}
