"""AnnotatedShards: node ids, reading key columns, and attaching columns read in place."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, AnnotatedShards, node_ids, shards_and_rows

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture
def shards(tmp_path) -> AnnotatedShards:
    """Three shards whose rows have gaps (as after annotate-phase rejects), in row groups of 3."""
    uris = {}
    for key, rows in {"b": [0, 2, 3, 7, 8, 9, 11], "a": [1, 4], "c": [5, 6, 10, 12, 13]}.items():
        table = pa.table(
            {
                cols.SHARD: [key] * len(rows),
                cols.ROW: pa.array(rows, pa.int64()),
                cols.ID: [f"{key}-{r}" for r in rows],
                "sets": pa.array([list(range(r)) for r in rows], pa.list_(pa.uint32())),
            }
        )
        uris[key] = str(tmp_path / f"{key}.parquet")
        pq.write_table(table, uris[key], row_group_size=3)
    return AnnotatedShards(uris)


def test_node_ids_sort_like_shard_then_row():
    nodes = node_ids(np.array([1, 0, 1, 2]), np.array([5, 9, 0, 3]))
    shard, row = shards_and_rows(nodes, ["a", "b", "c"])
    assert shard.to_pylist() == ["b", "a", "b", "c"] and row.to_pylist() == [5, 9, 0, 3]
    assert list(np.argsort(nodes)) == [1, 2, 0, 3]


def test_read_adds_node_for_every_document(shards):
    rows = shards.read([cols.ID]).take_all()
    assert len(rows) == 14
    for r in rows:
        shard, row = shards_and_rows(np.array([r[NODE]]), shards.shard_keys)
        assert r[cols.ID] == f"{shard[0].as_py()}-{row[0].as_py()}"


def test_attach_reads_the_requested_rows_across_shards_and_row_groups(shards):
    import ray.data

    wanted = [("b", 11), ("a", 1), ("c", 13), ("b", 0), ("b", 11), ("c", 5), ("b", 8)]
    ordinal = {k: i for i, k in enumerate(shards.shard_keys)}
    nodes = node_ids(np.array([ordinal[s] for s, _ in wanted]), np.array([r for _, r in wanted]))
    requests = pa.table({"tag": pa.array(range(len(wanted)), pa.int64()), "n": pa.array(nodes)})
    result = shards.attach(
        ray.data.from_arrow([requests.slice(0, 3), requests.slice(3)]),
        "n",
        requests.schema,
        pa.schema([(cols.ID, pa.string()), ("sets", pa.list_(pa.uint32()))]),
        ["doc_id", "values"],
    ).take_all()
    got = sorted((r["tag"], r["doc_id"], list(r["values"])) for r in result)
    assert got == [(i, f"{s}-{r}", list(range(r))) for i, (s, r) in enumerate(wanted)]


def test_attach_names_the_file_when_a_row_is_missing(shards):
    import ray.data

    requests = pa.table({"n": pa.array(node_ids(np.array([0]), np.array([2])))})  # shard "a" has no row 2
    with pytest.raises(Exception, match=r"a\.parquet has no annotated row 2"):
        shards.attach(
            ray.data.from_arrow(requests), "n", requests.schema, pa.schema([(cols.ID, pa.string())])
        ).take_all()


def test_replaced_texts_keep_the_schema_and_a_writer_takes_batches_that_differ_in_nullability(tmp_path):
    import contextlib

    import pyarrow.parquet as pq

    from pipeline.core import columns as cols
    from pipeline.core.parquet_io import LazyParquetWriter

    docs = pa.table(
        {"text": ["a b", "c d"], "text_bytes": [3, 3]},
        schema=pa.schema(
            [pa.field("text", pa.string(), nullable=False), pa.field("text_bytes", pa.int64(), nullable=False)]
        ),
    )
    replaced = cols.with_texts_replaced(docs, {0: "<EMAIL> b"})
    assert replaced.schema.equals(docs.schema) and replaced.column("text_bytes").to_pylist() == [9, 3]
    loose = pa.table({"text": ["e"], "text_bytes": [1]})  # nullable fields: a batch rebuilt elsewhere
    with contextlib.ExitStack() as stack:
        writer = LazyParquetWriter(stack, str(tmp_path / "out.parquet"), None)
        writer.write(docs)
        writer.write(loose)
    assert pq.read_table(tmp_path / "out.parquet").column("text").to_pylist() == ["a b", "c d", "e"]
