"""Chat jobs' input: records of chat or instruction data as conversations (``input.chat``).

A record is a JSON lines line, an element of a JSON array file (``[{...}, ...]``, as
LLaMA-Factory's and Alpaca's files are) or a Parquet row, in Alpaca, ShareGPT, OpenAI or
ChatML form (``pipeline.chat.formats``). Each becomes one row: its conversation as JSON
(``cols.CONVERSATION``) and, for the document stages, its text fields joined
(``pipeline.chat.segments``) as the text column. A record malformed for its format is
quarantined with what is wrong; a conversation that breaks a rule of
``pipeline.chat.validation`` is rejected by ``validate`` with the rule's reason. A file
whose first record is in none of the formats is not chat data: it is quarantined whole,
naming the record.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.chat.config import ChatInputConfig
from pipeline.chat.formats import FormatError, detect_format, format_fields, read_conversation
from pipeline.chat.segments import clean, conversation_text, first_user_turn
from pipeline.chat.validation import invalid_reason
from pipeline.core import columns as cols
from pipeline.phases.annotate.readers import (
    Batch,
    JsonLinesSource,
    ShardSource,
    _as_text,
    _field,
    quarantine_records,
)
from pipeline.phases.annotate.validation import InputValidation, ShardRejected

CHAT_INVALID = "chat_invalid"
"""In a chat batch: the validation rule the conversation breaks, or null."""


def _cleaned(conversation: dict[str, Any]) -> dict[str, Any]:
    for m in conversation["messages"]:
        m["content"] = clean(m["content"])
        for call in m.get("tool_calls") or []:
            call["arguments"] = clean(call["arguments"])
    return conversation


def _size(record: Any) -> int:
    """A quarantined record's bytes, as JSON."""
    return len(json.dumps(record, ensure_ascii=False, default=str).encode())


class ChatRecords:
    """Turns records into a batch of conversations (``Batch``)."""

    def __init__(self, validation: InputValidation, uri: str, key: str) -> None:
        self.config: ChatInputConfig = validation.config.chat
        self.input = validation.config
        self.validation = validation
        self.uri, self.key = uri, key
        self.carry = validation.config.carry_columns != "none"
        self.seen: dict[str, None] = {}
        """Carried fields met so far, in order of first appearance."""

    def _carried(self, record: dict[str, Any], fmt: str) -> str | None:
        """The record's fields besides its conversation (``generation`` provenance, a source's
        own metadata), as JSON, for document outputs."""
        names = self.validation.carried(list(record), format_fields(fmt, self.config.columns))
        if not names:
            return None
        self.seen.update(dict.fromkeys(names))
        return json.dumps({n: record[n] for n in names}, ensure_ascii=False, separators=(",", ":"), default=str)

    def batch(self, records: list[tuple[int, str, Any]], bad: list[tuple[int, int, str, str]]) -> Batch:
        """``records``: (row, where, record); ``bad``: quarantine entries (row, bytes, reason, detail)."""
        c = self.config
        texts, ids, domains, urls, conversations, invalid, dedup, rows, carried = [], [], [], [], [], [], [], [], []
        for row, where, record in records:
            if not isinstance(record, dict):
                bad.append((row, _size(record), "not_a_json_object", f"{where}: a JSON {type(record).__name__}"))
                continue
            fmt = c.format if c.format != "auto" else detect_format(record, c.columns)
            if fmt is None:
                if row == 0:
                    raise ShardRejected(
                        "not_chat_data",
                        f"{where} is in none of the chat formats (fields: {', '.join(sorted(map(str, record))[:8])}); "
                        "name input.chat.format, or map renamed fields in input.chat.columns",
                    )
                fields = ", ".join(sorted(map(str, record))[:8])
                bad.append((row, _size(record), "unknown_chat_format", f"{where}: fields {fields}"))
                continue
            try:
                conversation = _cleaned(read_conversation(record, fmt, c.columns))
            except FormatError as exc:
                bad.append((row, _size(record), f"malformed_{fmt}_record", f"{where}: {exc}"))
                continue
            rows.append(row)
            texts.append(conversation_text(conversation))
            ids.append(_as_text(_field(record, self.input.id_column)) if self.input.id_column else None)
            domains.append(_as_text(_field(record, self.input.domain_column)) if self.input.domain_column else None)
            urls.append(_as_text(_field(record, self.input.url_column)) if self.input.url_column else None)
            invalid.append(invalid_reason(conversation, c.rules))
            if c.dedup_on == "first_user_turn":
                dedup.append(first_user_turn(conversation))
            conversations.append(json.dumps(conversation, ensure_ascii=False))
            if self.carry:
                carried.append(self._carried(record, fmt))
        columns: dict[str, pa.Array] = {self.input.text_column: pa.array(texts, pa.string())}
        for name, values in (
            (self.input.id_column, ids),
            (self.input.domain_column, domains),
            (self.input.url_column, urls),
        ):
            if name:
                columns[name] = pa.array(values, pa.string())
        columns[cols.CONVERSATION] = pa.array(conversations, pa.string())
        columns[CHAT_INVALID] = pa.array(invalid, pa.string())
        if c.dedup_on == "first_user_turn":
            columns[cols.DEDUP_TEXT] = pa.array(dedup, pa.string())
        if self.carry:
            columns[cols.INPUT_FIELDS] = pa.array(carried, pa.string())
        quarantined = quarantine_records(self.uri, self.key, bad)
        return Batch(pa.table(columns), pa.array(rows, pa.int64()), quarantined)


class ChatJsonLinesSource(JsonLinesSource):
    """JSON lines of chat records (plain, gzip or zstd; splittable by bytes when plain)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat = ChatRecords(self.validation, self.uri, self.key)
        self.where: dict[int, str] = {}

    @property
    def carried_fields(self) -> list[str]:
        return list(self.chat.seen)

    def _record(self, row: int, where: str, line: bytes, bad: list) -> dict[str, Any] | None:
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad.append((row, len(line), "invalid_utf8", f"{where}: byte {exc.start} of the line is not valid UTF-8"))
            return None
        except ValueError as exc:
            bad.append((row, len(line), "invalid_json", f"{where}: {exc}"))
            return None
        if len(line) > self.validation.config.max_document_bytes:
            bad.append(
                (
                    row,
                    len(line),
                    "document_too_large",
                    f"{where}: the record is {len(line)} bytes; input.max_document_bytes is "
                    f"{self.validation.config.max_document_bytes}",
                )
            )
            return None
        self.where[row] = where
        return record

    def _batch(self, records: list[tuple[int, dict[str, Any]]], bad: list[tuple[int, int, str, str]]) -> Batch:
        batch = self.chat.batch([(row, self.where.pop(row), record) for row, record in records], bad)
        self.where.clear()
        return batch


class ChatArraySource(ShardSource):
    """A JSON file holding one array of records (or one record); rows are array indexes.
    Read whole: such a file is one work unit."""

    kind = "json"

    def __init__(
        self, file: IO[bytes], compression: str, uri: str, key: str, validation: InputValidation, batch_rows: int
    ):
        self.file, self.uri, self.batch_rows = file, uri, batch_rows
        self.chat = ChatRecords(validation, uri, key)
        raw = file.read()
        if compression == "gz":
            raw = gzip.decompress(raw)
        elif compression == "zst":
            import zstandard

            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ShardRejected("invalid_utf8", f"byte {exc.start} of the file is not valid UTF-8") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ShardRejected("invalid_json", f"not a JSON array of records: {exc}") from None
        self.records = data if isinstance(data, list) else [data]
        self.num_rows = len(self.records)

    @property
    def carried_fields(self) -> list[str]:
        return list(self.chat.seen)

    def batches(self) -> Iterator[Batch]:
        for start in range(0, len(self.records), self.batch_rows):
            part = [
                (start + i, f"record {start + i}", r)
                for i, r in enumerate(self.records[start : start + self.batch_rows])
            ]
            yield self.chat.batch(part, [])


class ChatParquetSource(ShardSource):
    """Parquet rows as records (nested columns as lists and dicts); rows ``[start, end)`` of a split file."""

    kind = "parquet"

    def __init__(
        self,
        file: IO[bytes],
        uri: str,
        key: str,
        validation: InputValidation,
        batch_rows: int,
        rows: tuple[int, int] | None,
    ) -> None:
        self.file, self.batch_rows = file, batch_rows
        self.chat = ChatRecords(validation, uri, key)
        try:
            self.parquet = pq.ParquetFile(file)
            total = self.parquet.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ShardRejected("unreadable_parquet", f"{type(exc).__name__}: {exc}") from None
        self.start, self.end = rows if rows is not None else (0, total)
        self.num_rows = self.end - self.start

    @property
    def carried_fields(self) -> list[str]:
        return list(self.chat.seen)

    def batches(self) -> Iterator[Batch]:
        row = 0
        try:
            for batch in self.parquet.iter_batches(batch_size=self.batch_rows):
                lo, hi = max(self.start - row, 0), min(self.end - row, batch.num_rows)
                if hi > lo:
                    records = batch.slice(lo, hi - lo).to_pylist()
                    yield self.chat.batch([(row + lo + i, f"row {row + lo + i}", r) for i, r in enumerate(records)], [])
                row += batch.num_rows
                if row >= self.end:
                    return
        except (pa.ArrowException, OSError) as exc:
            raise ShardRejected(
                "unreadable_parquet", f"after row {row}: {type(exc).__name__}: {exc}", self.num_rows
            ) from None


def open_chat_source(
    file: IO[bytes],
    kind: str | None,
    head: bytes,
    uri: str,
    key: str,
    validation: InputValidation,
    batch_rows: int,
    rows: tuple[int, int] | None,
    byte_range: tuple[int, int] | None,
) -> ShardSource:
    if kind == "parquet":
        return ChatParquetSource(file, uri, key, validation, batch_rows, rows)
    compression = kind.rsplit(".", 1)[-1] if kind and "." in kind else ""
    if kind is not None and _starts_array(file, compression):
        return ChatArraySource(file, compression, uri, key, validation, batch_rows)
    if kind in ("jsonl", "jsonl.gz", "jsonl.zst"):
        if byte_range and kind != "jsonl":
            raise ShardRejected("unsplittable", f"a {kind} file cannot be read from an offset")
        return ChatJsonLinesSource(file, kind, uri, key, validation, batch_rows, byte_range)
    raise ShardRejected(
        "unknown_format",
        f"neither Parquet, a JSON array nor JSON lines (first bytes {head!r}); keep other files out of input.uri",
    )


def _starts_array(file: IO[bytes], compression: str) -> bool:
    """Whether the (decompressed) content's first non-blank character is ``[``."""
    file.seek(0)
    if compression == "gz":
        stream: IO[bytes] = gzip.GzipFile(fileobj=file)
    elif compression == "zst":
        import zstandard

        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(file, closefd=False))
    else:
        stream = file
    try:
        head = stream.read(256)
    except (OSError, EOFError):
        head = b""
    file.seek(0)
    return head.lstrip()[:1] == b"["


REWRITE_STAGE, REWRITE_BROKEN = "validate", "rewrite_merged_messages"


def conversations_after_stages(docs: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Kept conversations with what the stages rewrote in their text (PII scrubbing) put
    back into their messages and tool arguments; and as rejects (``rewrite_merged_messages``)
    any whose rewrite removed a break between two fields, which no recognizer's match should."""
    from pipeline.chat.segments import SegmentsChanged, with_text

    if cols.CONVERSATION not in docs.column_names or docs.num_rows == 0:
        return docs, cols.REJECTS_SCHEMA.empty_table()
    texts = docs.column(cols.TEXT).to_pylist()
    stored = docs.column(cols.CONVERSATION).to_pylist()
    updated, broken = [], []
    for i, (text, value) in enumerate(zip(texts, stored)):
        conversation = json.loads(value)
        if conversation_text(conversation) == text:
            updated.append(value)
            continue
        try:
            updated.append(json.dumps(with_text(conversation, text), ensure_ascii=False))
        except SegmentsChanged:
            updated.append(value)
            broken.append(i)
    at = docs.schema.get_field_index(cols.CONVERSATION)
    docs = docs.set_column(at, docs.schema.field(at), pa.array(updated, pa.string()))
    if not broken:
        return docs, cols.REJECTS_SCHEMA.empty_table()
    broken_rows = set(broken)
    mask = pa.array([i in broken_rows for i in range(docs.num_rows)])
    rejected = docs.filter(mask).select(cols.BASE_SCHEMA.names)
    rejects = cols.with_rejection(rejected, REWRITE_STAGE, pa.array([REWRITE_BROKEN] * rejected.num_rows, pa.string()))
    return docs.filter(pc.invert(mask)), rejects
