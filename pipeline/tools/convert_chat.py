"""``refinery convert-chat``: chat and instruction data from one format to another
(Alpaca, ShareGPT, OpenAI messages, ChatML), through the one schema, with every record
validated (``pipeline.chat.validation``) and every one accounted for.

Input: a file or a directory of them (local or ``s3://``), each a JSON array or one JSON
object (``.json``), JSON lines (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``) or Parquet. The format is detected
per record unless named. Output: JSON lines in the target format (gzipped when the name ends
in ``.gz``), in input order; conversations that fail validation, or that the target format
cannot hold (a multi-turn conversation as Alpaca, tool calls as ChatML), go with their
reason and source position to ``<output>.rejects.jsonl`` instead.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.chat import (
    ChatColumns,
    FormatError,
    NotRepresentable,
    ValidationRules,
    detect_format,
    invalid_reason,
    read_conversation,
)
from pipeline.chat import write_conversation as to_format
from pipeline.core import storage


class ChatInputError(ValueError):
    """An input file that holds no records of any chat format; the message names it and the record."""


@dataclass
class ConversionCounts:
    read: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)

    def balanced(self) -> bool:
        return self.read == self.written + sum(self.rejected.values())


def iter_records(uri: str, options: storage.StorageOptions | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, record) of every record of one file."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_read(uri, options) as f:
            position = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    yield position, record
                    position += 1
        return
    raw = storage.read_bytes(uri, options)
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChatInputError(f"{uri}: not UTF-8 text (byte {exc.start})") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise ChatInputError(f"{uri}: not a JSON array ({exc})") from None
        yield from enumerate(records)
        return
    if text.lstrip().startswith("{") and "\n" in text.strip():  # one pretty-printed object, or JSON lines
        try:
            yield 0, json.loads(text)
            return
        except ValueError:
            pass
    for position, line in enumerate(line for line in text.splitlines() if line.strip()):
        try:
            yield position, json.loads(line)
        except ValueError as exc:
            raise ChatInputError(f"{uri}: record {position} is not JSON ({exc})") from None


def convert_chat(
    source: str,
    out: str,
    to: str,
    from_format: str | None = None,
    columns: ChatColumns = ChatColumns(),
    rules: ValidationRules = ValidationRules(),
    options: storage.StorageOptions | None = None,
) -> ConversionCounts:
    files = storage.list_files(source, options)
    if not files:
        raise FileNotFoundError(f"no input files found at '{source}'")
    counts = ConversionCounts()
    written, rejects = [], []
    for uri in files:
        for position, record in iter_records(uri, options):
            counts.read += 1
            where = f"{uri}#{position}"
            if not isinstance(record, dict):
                raise ChatInputError(f"{uri}: record {position} is {type(record).__name__}, not an object")
            fmt = from_format or detect_format(record, columns)
            if fmt is None:
                fields = ", ".join(sorted(record)[:8])
                raise ChatInputError(
                    f"{uri}: record {position} is in none of the chat formats (fields: {fields}); "
                    "name the format (--from) or map renamed fields (--columns)"
                )
            try:
                conversation = read_conversation(record, fmt, columns, fallback_id=where)
                reason = invalid_reason(conversation, rules)
                if reason is None:
                    written.append(to_format(conversation, to))
                    counts.formats[fmt] += 1
                    continue
                detail = reason
            except NotRepresentable as exc:
                reason, detail = f"not_representable_as_{to}", str(exc)
            except FormatError as exc:
                reason, detail = f"malformed_{fmt}_record", str(exc)
            counts.rejected[reason] += 1
            rejects.append({"source": where, "reason": reason, "detail": detail})
    _write_lines(out, written, options)
    _write_lines(f"{out.removesuffix('.gz')}.rejects.jsonl", rejects, options)
    counts.written = len(written)
    return counts


def _write_lines(uri: str, records: list[dict[str, Any]], options: storage.StorageOptions | None) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    storage.write_bytes(uri, gzip.compress(data, mtime=0) if uri.endswith(".gz") else data, options)
