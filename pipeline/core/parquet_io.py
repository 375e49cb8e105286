"""Streaming Parquet output that is committed atomically."""

from __future__ import annotations

import contextlib

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import storage


class LazyParquetWriter:
    """A Parquet file opened on its first write and committed when ``stack`` closes.

    If the stack unwinds with an exception, nothing is published.
    """

    def __init__(
        self, stack: contextlib.ExitStack, uri: str, options: storage.StorageOptions, schema: pa.Schema | None = None
    ) -> None:
        self.stack, self.uri, self.options, self.schema = stack, uri, options, schema
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0 and self.writer is not None:
            return
        if self.schema is not None:
            table = table.select(self.schema.names).cast(self.schema)
        if self.writer is None:
            sink = self.stack.enter_context(storage.atomic_writer(self.uri, self.options))
            self.writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
            # Registered after the sink, so it runs first: the footer is written before the commit.
            self.stack.callback(self.writer.close)
        elif not table.schema.equals(self.writer.schema):
            # Batches of one file may differ in a field's nullability alone (a column rebuilt by a
            # stage in one batch and not in the next): the file keeps its first schema.
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows
