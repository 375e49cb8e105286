"""An input shard as batches of rows, whatever its format.

Parquet, or JSON lines: plain, gzip or zstd (``.jsonl``, ``.jsonl.gz``, ``.json.zst``, dolma's
``id``/``text``/``metadata`` records or flat ones). ``input.format: auto`` tells them apart by
the first bytes (Parquet's ``PAR1``, gzip's and zstd's magic numbers, a ``{``), and by the
file name only when the content says nothing (an empty file), so a Parquet file without
``.parquet`` is read as Parquet.

Every batch has the columns the input config names (``text_column``, ``id_column``, ...),
under those names, and the row number of each row: Parquet's row index, or for JSON lines
the byte offset of the row's line in the uncompressed file (blank lines are skipped and are
not documents). In JSON lines a name may be a dotted path into nested objects (``metadata.url``). A line that is
not a JSON object, or not UTF-8, or whose text is not a string, is quarantined with its line
number; the rest of the file is read.
"""

from __future__ import annotations

import gzip
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.phases.annotate.validation import InputValidation, ShardRejected

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")


def sniff(head: bytes, uri: str) -> str | None:
    """``parquet``, ``jsonl``, ``jsonl.gz`` or ``jsonl.zst`` from a file's first bytes, then
    from its name; None when neither tells."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(GZIP_MAGIC):
        return "jsonl.gz"
    if head.startswith(ZSTD_MAGIC):
        return "jsonl.zst"
    if head.lstrip().startswith((b"{", b"[")):  # a JSON array: chat inputs read it as one
        return "jsonl"
    name = uri.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl" + (".gz" if name.endswith(".gz") else ".zst" if name.endswith(".zst") else "")
    return None


def file_kind(head: bytes, uri: str, configured: str) -> str | None:
    """What a file is read as: ``input.format`` when it names one (for ``jsonl`` the
    compression still comes from the content), else what ``sniff`` tells."""
    found = sniff(head, uri)
    if configured == "auto":
        return found
    if configured == "jsonl":
        return found if found in ("jsonl.gz", "jsonl.zst") else "jsonl"
    return configured


@dataclass
class Batch:
    raw: pa.Table
    """The configured columns, under their configured names."""
    rows: pa.Array
    """Row number of each row of ``raw`` in the shard."""
    bad: pa.Table
    """Quarantine records (``cols.QUARANTINE_SCHEMA``) of lines that hold no document."""


class ShardSource(ABC):
    """A shard opened for reading; ``num_rows`` when the format knows it up front."""

    kind: str
    file: IO[bytes]
    num_rows: int | None = None

    @property
    def carried_fields(self) -> list[str]:
        """JSON lines: the carried fields met so far (``cols.INPUT_FIELDS`` holds them), in
        order of first appearance."""
        return []

    @abstractmethod
    def batches(self) -> Iterator[Batch]:
        """The shard's rows in order, a batch at a time."""

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ShardSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(
    uri: str,
    key: str,
    options: storage.StorageOptions,
    validation: InputValidation,
    batch_rows: int,
    rows: tuple[int, int] | None = None,
    byte_range: tuple[int, int] | None = None,
) -> ShardSource:
    """The shard at ``uri`` ready to read (only rows ``[start, end)`` of a Parquet file split
    into units, or the lines beginning in ``byte_range`` of an uncompressed JSON lines file);
    ``ShardRejected`` when it cannot be read at all."""
    config = validation.config
    try:
        file = storage.open_read(uri, options)
    except OSError as exc:
        raise ShardRejected("unreadable_file", f"{type(exc).__name__}: {exc}") from None
    try:
        head = file.read(4)
        file.seek(0)
        kind = file_kind(head, uri, config.format)
        if config.chat is not None:
            from pipeline.phases.annotate.chat import open_chat_source

            return open_chat_source(file, kind, head, uri, key, validation, batch_rows, rows, byte_range)
        if kind == "parquet":
            return ParquetSource(file, validation, batch_rows, rows)
        if kind in ("jsonl", "jsonl.gz", "jsonl.zst"):
            if byte_range and kind != "jsonl":
                raise ShardRejected("unsplittable", f"a {kind} file cannot be read from an offset")
            return JsonLinesSource(file, kind, uri, key, validation, batch_rows, byte_range)
        raise ShardRejected(
            "unknown_format",
            f"neither Parquet nor JSON lines (first bytes {head!r}); set input.format, or keep other "
            "files out of input.uri (names starting with _ or . are skipped)",
        )
    except BaseException:
        file.close()
        raise


class ParquetSource(ShardSource):
    kind = "parquet"

    def __init__(
        self, file: IO[bytes], validation: InputValidation, batch_rows: int, rows: tuple[int, int] | None = None
    ) -> None:
        self.file, self.batch_rows = file, batch_rows
        try:
            self.parquet = pq.ParquetFile(file)
            total = self.parquet.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ShardRejected("unreadable_parquet", f"{type(exc).__name__}: {exc}") from None
        self.start, self.end = rows if rows is not None else (0, total)
        self.num_rows = self.end - self.start
        validation.check_schema(self.parquet.schema_arrow, self.num_rows)
        self.columns = validation.columns_to_read(self.parquet.schema_arrow)
        # the row groups that hold rows of [start, end), and the file row each begins at
        self.groups, self.first_row = [], None
        begin = 0
        for group in range(self.parquet.metadata.num_row_groups):
            size = self.parquet.metadata.row_group(group).num_rows
            if begin < self.end and begin + size > self.start:
                self.groups.append(group)
                self.first_row = begin if self.first_row is None else self.first_row
            begin += size

    def batches(self) -> Iterator[Batch]:
        if not self.groups:
            return
        stream = self.parquet.iter_batches(batch_size=self.batch_rows, columns=self.columns, row_groups=self.groups)
        row = self.first_row
        while row < self.end:
            try:
                batch = next(stream)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                raise ShardRejected(
                    "unreadable_parquet",
                    f"after row {max(row, self.start)}: {type(exc).__name__}: {exc}",
                    self.num_rows,
                ) from None
            lo, hi = max(self.start - row, 0), min(self.end - row, batch.num_rows)
            if hi > lo:
                raw = pa.Table.from_batches([batch.slice(lo, hi - lo)])
                rows = pa.array(range(row + lo, row + hi), pa.int64())
                yield Batch(raw, rows, cols.QUARANTINE_SCHEMA.empty_table())
            row += batch.num_rows


class JsonLinesSource(ShardSource):
    """Rows are the byte offset of each line in the (uncompressed) file, so that a unit of a
    file split into byte ranges numbers its lines as the whole file's reading would; a
    quarantine record also gives the line's number when the unit starts at the file's start.
    A byte range ``[start, end)`` holds the lines that begin inside it."""

    def __init__(
        self,
        file: IO[bytes],
        kind: str,
        uri: str,
        key: str,
        validation: InputValidation,
        batch_rows: int,
        byte_range: tuple[int, int] | None = None,
    ) -> None:
        self.file, self.kind, self.uri, self.key, self.batch_rows = file, kind, uri, key, batch_rows
        self.start, self.end = byte_range if byte_range else (0, None)
        config = validation.config
        self.validation = validation
        self.text = config.text_column
        self.fields = [name for name in (config.id_column, config.domain_column, config.url_column) if name]
        self.carry = config.carry_columns != "none"
        self.seen: dict[str, None] = {}

    def _lines(self) -> IO[bytes]:
        if self.kind == "jsonl.gz":
            return gzip.GzipFile(fileobj=self.file)
        if self.kind == "jsonl.zst":
            import zstandard

            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(self.file, closefd=False))
        return self.file

    def _first_line(self, lines: IO[bytes]) -> int:
        """Position ``lines`` at the first line that begins at or after ``start``; its offset."""
        if not self.start:
            return 0
        lines.seek(self.start - 1)
        if lines.read(1) == b"\n":
            return self.start
        return self.start + len(lines.readline())

    def batches(self) -> Iterator[Batch]:
        lines = self._lines()
        offset = self._first_line(lines)
        records: list[tuple[int, dict[str, Any]]] = []
        bad: list[tuple[int, int, str, str]] = []
        number = -1  # the line's index, known when reading from the file's start
        while self.end is None or offset < self.end:
            try:
                line = lines.readline()
            except (OSError, EOFError, ValueError) as exc:  # a corrupt or cut-off gzip/zstd stream
                raise ShardRejected("unreadable_jsonl", f"after byte {offset}: {type(exc).__name__}: {exc}") from None
            if not line:
                break
            number += 1
            line_offset, offset = offset, offset + len(line)
            if not line.strip():
                continue
            where = f"line {number + 1} (byte {line_offset})" if not self.start else f"line at byte {line_offset}"
            record = self._record(line_offset, where, line, bad)
            if record is not None:
                records.append((line_offset, record))
            if len(records) + len(bad) >= self.batch_rows:
                yield self._batch(records, bad)
                records, bad = [], []
        if records or bad:
            yield self._batch(records, bad)

    def _record(self, row: int, where: str, line: bytes, bad: list) -> dict[str, Any] | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((row, len(line), "invalid_utf8", f"{where}: byte {exc.start} of the line is not valid UTF-8"))
            return None
        try:
            record = json.loads(text)
        except ValueError as exc:
            bad.append((row, len(line), "invalid_json", f"{where}: {exc}"))
            return None
        if not isinstance(record, dict):
            bad.append((row, len(line), "not_a_json_object", f"{where}: a JSON {type(record).__name__}"))
            return None
        value = _field(record, self.text)
        if value is not None and not isinstance(value, str):
            bad.append((row, len(line), "bad_text_type", f"{where}: '{self.text}' is a JSON {type(value).__name__}"))
            return None
        return record

    def _batch(self, records: list[tuple[int, dict[str, Any]]], bad: list[tuple[int, int, str, str]]) -> Batch:
        columns = {self.text: pa.array([_field(r, self.text) for _, r in records], pa.string())}
        for name in self.fields:
            columns[name] = pa.array([_as_text(_field(r, name)) for _, r in records], pa.string())
        if self.carry:
            columns[cols.INPUT_FIELDS] = pa.array([self._carried(r) for _, r in records], pa.string())
        quarantined = quarantine_records(self.uri, self.key, bad)
        return Batch(pa.table(columns), pa.array([n for n, _ in records], pa.int64()), quarantined)

    @property
    def carried_fields(self) -> list[str]:
        return list(self.seen)

    def _carried(self, record: dict[str, Any]) -> str | None:
        carry = self.validation.config.carry_columns
        names = self.validation.carried(
            list(record) if carry == "all" else [n for n in carry if _lookup(record, n) is not _ABSENT]
        )
        if not names:
            return None
        for name in names:
            self.seen.setdefault(name, None)
        return json.dumps({name: _field(record, name) for name in names}, ensure_ascii=False, separators=(",", ":"))


def quarantine_records(uri: str, key: str, bad: list[tuple[int, int, str, str]]) -> pa.Table:
    """Quarantine records (``cols.QUARANTINE_SCHEMA``) of lines or records that hold no
    document: each (row, bytes, reason, detail)."""
    return pa.table(
        {
            cols.SOURCE_URI: [uri] * len(bad),
            cols.SHARD: [key] * len(bad),
            cols.ROW: pa.array([b[0] for b in bad], pa.int64()),
            cols.ID: pa.nulls(len(bad), pa.string()),
            cols.TEXT_BYTES: pa.array([b[1] for b in bad], pa.int64()),
            cols.QUARANTINE_REASON: [b[2] for b in bad],
            cols.QUARANTINE_DETAIL: [b[3] for b in bad],
        },
        schema=cols.QUARANTINE_SCHEMA,
    )


_ABSENT = object()


def _lookup(record: dict[str, Any], path: str) -> Any:
    """``record[path]``, or the value at a dotted path (``metadata.url``); ``_ABSENT`` when none."""
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _field(record: dict[str, Any], path: str) -> Any:
    """The value at ``path`` (see ``_lookup``); None when absent."""
    value = _lookup(record, path)
    return None if value is _ABSENT else value


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
