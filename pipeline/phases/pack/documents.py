"""Document shards: the kept documents of one output shard, with their annotations, in the
mix's global order (``output.kind: documents`` or ``both``).

Every document shard of a snapshot has one schema (``DocumentSchema``): ``id``, ``text``,
``domain`` (the mix's), ``url``, then the prepared columns of all input shards (stage
annotations and carried input columns, unified across files), JSON lines' carried fields
spread into string columns, and ``copy`` (0 for a document's first copy in the mix).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import AnnotateMarker
from pipeline.phases.tokenize.phase import PLACEMENT_FIELDS, TOKEN_FIELDS

_PLACEMENT = {f.name for f in PLACEMENT_FIELDS + TOKEN_FIELDS} | {cols.MIX_WEIGHT}
SUFFIXES = {"parquet": ".parquet", "jsonl.gz": ".jsonl.gz"}


class DocumentSchemaError(ValueError):
    """Input files whose carried columns cannot share one schema."""


@dataclass
class DocumentSchema:
    prepared: pa.Schema
    """The document columns read from prepared shards, unified over all of them."""
    json_fields: list[str]
    """JSON lines fields carried in ``cols.INPUT_FIELDS``, in order of first appearance."""

    @property
    def json_columns(self) -> dict[str, str]:
        """Carried JSON lines field -> its column in the document shards."""
        taken = set(self.prepared.names) | {cols.DOMAIN, cols.COPY}
        return {name: cols.carried_name(name, taken) for name in self.json_fields}

    @property
    def output(self) -> pa.Schema:
        fields = [pa.field(cols.ID, pa.string()), pa.field(cols.TEXT, pa.string()), pa.field(cols.DOMAIN, pa.string())]
        for field in self.prepared:
            if field.name == cols.INPUT_FIELDS:
                fields += [pa.field(column, pa.string()) for column in self.json_columns.values()]
            elif field.name not in (cols.ID, cols.TEXT):
                fields.append(field.with_nullable(True))
        return pa.schema([*fields, pa.field(cols.COPY, pa.int32())])

    def to_json(self) -> dict[str, Any]:
        return {
            "prepared": base64.b64encode(self.prepared.serialize().to_pybytes()).decode(),
            "json_fields": self.json_fields,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentSchema:
        prepared = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["prepared"])))
        return cls(prepared, list(data["json_fields"]))


def document_schema(spec: JobSpec, shard_keys: list[str], annotate_stats: list[AnnotateMarker]) -> DocumentSchema:
    """The one schema of a snapshot's document shards, from the prepared shards' footers."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options

    def schema_of(key: str) -> pa.Schema:
        with storage.open_read(layout.tokenized(key), options) as f:
            schema = pq.read_schema(f)
        return pa.schema([f for f in schema if f.name not in _PLACEMENT])

    with ThreadPoolExecutor(max_workers=1 if storage.is_local(spec.output.uri) else 16) as pool:
        schemas = list(pool.map(schema_of, shard_keys))
    try:
        prepared = pa.unify_schemas(schemas or [pa.schema([])], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DocumentSchemaError(
            f"the input files' columns cannot share one schema in the document shards ({exc}); leave the "
            "column out with input.carry_columns (a list of the columns to keep), or make its type agree"
        ) from None
    json_fields: dict[str, None] = {}
    for marker in sorted(annotate_stats, key=lambda m: m.shard_key):
        json_fields.update(dict.fromkeys(marker.carried_fields))
    return DocumentSchema(prepared, list(json_fields))


def document_table(pieces: list[pa.Table], schema: DocumentSchema, raw_fields: bool = False) -> pa.Table:
    """One shard's documents (``pieces`` already in output order, with ``domain`` and
    ``copy``), conformed to the snapshot's schema; ``raw_fields`` (chat records) keeps the
    carried fields as their JSON too (``cols.INPUT_FIELDS``)."""
    output = schema.output
    table = pa.concat_tables(pieces, promote_options="permissive") if pieces else None
    n = table.num_rows if table is not None else 0
    columns = []
    by_output_name = {}
    if table is not None and cols.INPUT_FIELDS in table.column_names:
        spread = _spread_json(table.column(cols.INPUT_FIELDS), schema.json_fields)
        by_output_name = {schema.json_columns[name]: values for name, values in spread.items()}
    for field in output:
        if table is not None and field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in by_output_name:
            columns.append(by_output_name[field.name])
        else:
            columns.append(pa.nulls(n, field.type))
    out = pa.Table.from_arrays(columns, schema=output)
    if raw_fields and table is not None and cols.INPUT_FIELDS in table.column_names:
        out = out.append_column(cols.INPUT_FIELDS, table.column(cols.INPUT_FIELDS))
    return out


def _spread_json(column: pa.ChunkedArray, names: list[str]) -> dict[str, pa.Array]:
    values: dict[str, list[str | None]] = {name: [] for name in names}
    for text in column.to_pylist():
        record = json.loads(text) if text else {}
        for name in names:
            value = record.get(name)
            values[name].append(
                value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            )
    return {name: pa.array(v, pa.string()) for name, v in values.items()}


def encode_documents(table: pa.Table, fmt: str, row_group_rows: int, chat_format: str | None = None) -> bytes:
    """A document shard's bytes; the same table gives the same bytes. A chat job's shard
    (``chat_format``) holds one JSON lines record per conversation, in that format, with its id
    and the fields carried from its input record (``generation`` provenance, ...) after them."""
    if chat_format is not None:
        from pipeline.chat.formats import write_conversation

        carried = (
            table.column(cols.INPUT_FIELDS).to_pylist()
            if cols.INPUT_FIELDS in table.column_names
            else [None] * table.num_rows
        )
        lines = []
        for doc_id, conversation, fields in zip(
            table.column(cols.ID).to_pylist(), table.column(cols.CONVERSATION).to_pylist(), carried
        ):
            record = write_conversation({**json.loads(conversation), "conversation_id": doc_id}, chat_format)
            for name, value in json.loads(fields).items() if fields else ():
                record.setdefault(name, value)  # never over the conversation's own fields
            lines.append(json.dumps(record, ensure_ascii=False))
        return gzip.compress(("\n".join(lines) + ("\n" if lines else "")).encode(), mtime=0)
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd", row_group_size=row_group_rows)
        return sink.getvalue()
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):  # NaN is not JSON: null instead
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column))
    lines = [json.dumps(row, ensure_ascii=False, default=str) for row in table.to_pylist(maps_as_pydicts="strict")]
    return gzip.compress(("\n".join(lines) + ("\n" if lines else "")).encode(), mtime=0)
