"""The annotated shards, as the global stages of the dedup phase see them.

Every annotated document gets a node id, one int64 that sorts like (shard, row). A stage
reads the few key columns it needs for every document with ``read``; wide columns
(shingle sets, ids) it attaches only to the rows that ask for them, with ``attach``.
Attaching is a join that exploits the shards' order: annotated files hold their rows in
row order, so the requests, sorted by node, map to row groups of a few files. The values
are read where they lie; only the requests cross the shuffle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.blocks import sorted_by

if TYPE_CHECKING:
    import ray.data

NODE = "node"
_ROW_BITS = 32


def node_ids(shard_ordinals: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One int64 per document that sorts like (shard_key, row)."""
    return (shard_ordinals.astype(np.int64) << _ROW_BITS) | rows.astype(np.int64)


def shard_ordinals(shard_column: pa.ChunkedArray | pa.Array, shard_keys: list[str]) -> np.ndarray:
    return pc.index_in(shard_column, value_set=pa.array(shard_keys)).to_numpy(zero_copy_only=False)


def shards_and_rows(nodes: np.ndarray, shard_keys: list[str]) -> tuple[pa.Array, pa.Array]:
    names = np.array(shard_keys, dtype=object)
    return pa.array(names[nodes >> _ROW_BITS], pa.string()), pa.array(nodes & 0xFFFFFFFF, pa.int64())


class AnnotatedShards:
    """``new``: shard key -> annotated Parquet URI, for every shard this run deduplicates.
    ``indexed``: shard key -> index shard URI, the kept documents of shards deduplicated by
    earlier runs. Indexed shards get the smaller node ids, so their documents come first."""

    def __init__(
        self, new: dict[str, str], options: storage.StorageOptions | None = None, indexed: dict[str, str] | None = None
    ) -> None:
        indexed = indexed or {}
        self.shard_keys = sorted(indexed) + sorted(new)
        self.uris = [indexed[key] for key in sorted(indexed)] + [new[key] for key in sorted(new)]
        self.options = options
        self.first_new_node = len(indexed) << _ROW_BITS

    def num_documents(self) -> int:
        """Rows of every shard, from the Parquet footers."""
        total = 0
        for uri in self.uris:
            with storage.open_read(uri, self.options) as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total

    def read(self, columns: list[str]) -> ray.data.Dataset:
        """``columns`` of every document, plus ``node``."""
        import ray.data

        fs, _ = storage.pyarrow_filesystem(self.uris[0], self.options)
        paths = [storage.filesystem(uri, self.options)[1] for uri in self.uris]
        needed = sorted({cols.SHARD, cols.ROW, *columns})
        return ray.data.read_parquet(paths, filesystem=fs, columns=needed).map_batches(
            _with_nodes, fn_kwargs={"shard_keys": self.shard_keys, "columns": list(columns)}, batch_format="pyarrow"
        )

    def attach(
        self,
        requests: ray.data.Dataset,
        key: str,
        request_schema: pa.Schema,
        columns: pa.Schema,
        names: list[str] | None = None,
    ) -> ray.data.Dataset:
        """Rows of ``requests`` (``request_schema``) with the ``columns`` of the document
        whose node is ``requests[key]``, renamed to ``names`` if given."""
        names = names or columns.names
        out_schema = pa.schema([*request_schema, *(pa.field(n, f.type) for n, f in zip(names, columns))])
        return sorted_by(requests, key).map_batches(
            _attach_rows,
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs={
                "uris": self.uris,
                "options": self.options,
                "key": key,
                "columns": columns,
                "out_schema": out_schema,
            },
        )


def _with_nodes(block: pa.Table, shard_keys: list[str], columns: list[str]) -> pa.Table:
    nodes = node_ids(shard_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy())
    return pa.table({NODE: pa.array(nodes), **{c: block.column(c) for c in columns}})


def _attach_rows(
    block: pa.Table, uris: list[str], options, key: str, columns: pa.Schema, out_schema: pa.Schema
) -> pa.Table:
    if block.num_rows == 0:
        return out_schema.empty_table()
    nodes, inverse = np.unique(block.column(key).to_numpy(), return_inverse=True)
    ordinals = nodes >> _ROW_BITS
    parts = [read_rows(uris[o], options, nodes[ordinals == o] & 0xFFFFFFFF, columns) for o in np.unique(ordinals)]
    values = pa.concat_tables(parts).take(pa.array(inverse))
    request_columns = [block.column(f.name) for f in list(out_schema)[: len(out_schema) - len(columns)]]
    return pa.Table.from_arrays([*request_columns, *values.columns], schema=out_schema)


def read_rows(uri: str, options, rows: np.ndarray, columns: pa.Schema | list[str]) -> pa.Table:
    """The ``columns`` of the given rows (sorted, distinct) of one annotated shard, reading
    only the row groups that hold them: a schema's columns cast to it, or the named columns
    the file has. LookupError when a row is not there."""
    with storage.open_read(uri, options, random_access=True) as source:
        parquet = pq.ParquetFile(source)
        if isinstance(columns, pa.Schema):
            names = columns.names
        else:
            names = [c for c in columns if c in parquet.schema_arrow.names]
        all_rows = parquet.read(columns=[cols.ROW]).column(cols.ROW).to_numpy()
        positions = np.searchsorted(all_rows, rows)
        missing = (positions >= len(all_rows)) | (all_rows[np.minimum(positions, len(all_rows) - 1)] != rows)
        if missing.any():
            raise LookupError(f"{uri} has no annotated row {int(rows[missing][0])}; was it rewritten during the run?")
        group_ends = np.cumsum([parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
        group_of = np.searchsorted(group_ends, positions, side="right")
        groups = np.unique(group_of)
        table = parquet.read_row_groups(groups.tolist(), columns=names)
    group_starts = group_ends - np.array(
        [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    )
    read_starts = np.r_[0, np.cumsum(group_ends[groups] - group_starts[groups])[:-1]]
    local = positions - group_starts[group_of] + read_starts[np.searchsorted(groups, group_of)]
    found = table.take(pa.array(local))
    return found.cast(columns) if isinstance(columns, pa.Schema) else found
