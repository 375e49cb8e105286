"""Reading eval sets (JSONL, JSONL.gz, Parquet, CSV) into item texts and names."""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import pyarrow as pa

from pipeline.core import storage
from pipeline.stages.contamination.config import EvalSetConfig

# Fields that name an item in the report, when the eval file has one.
_ID_FIELDS = ("task_id", "id", "idx", "question_id")


class EvalSetError(ValueError):
    """An eval set that cannot be read, named by its benchmark."""


def iter_eval_set(config: EvalSetConfig):
    """The eval set's rows, one at a time; errors name the benchmark and the file."""
    uri, label = config.uri, f"benchmark '{config.name}' ({config.uri})"
    try:
        data = storage.read_bytes(uri, config.storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise EvalSetError(f"{label}: cannot read the file: {exc}") from None
    lower = uri.lower()
    if lower.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise EvalSetError(f"{label}: not readable as gzip: {exc}") from None
        lower = lower[:-3]
    kind = lower.rsplit(".", 1)[-1]
    if kind not in ("parquet", "csv", "jsonl", "json"):
        raise EvalSetError(f"{label}: unknown format (use .jsonl, .jsonl.gz, .parquet or .csv)")
    fields = config.text_fields()
    count = 0
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        elif kind == "csv":
            rows = csv.DictReader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""))
        else:  # line by line from the bytes: no decoded copy of the whole file
            rows = (json.loads(line) for line in io.BytesIO(data) if line.strip())
        del data
        for row in rows:
            if count == 0:
                missing = [f for f in fields if f not in row]
                if missing:
                    raise EvalSetError(
                        f"{label}: missing field(s) {', '.join(missing)}; it has {', '.join(map(str, row))}"
                    )
            count += 1
            yield row
    except EvalSetError:
        raise
    except (ValueError, UnicodeDecodeError, pa.ArrowException, OSError) as exc:
        raise EvalSetError(f"{label}: not readable as {kind} (item {count + 1}): {exc}") from None
    if count == 0:
        raise EvalSetError(f"{label}: the file holds no items")


def item_text(row: dict[str, Any], fields: list[str]) -> str:
    parts = []
    for field in fields:
        value = row.get(field)
        if isinstance(value, (list, tuple)):
            parts += [str(v) for v in value if v is not None]
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def item_name(row: dict[str, Any], number: int) -> str:
    for field in _ID_FIELDS:
        if row.get(field) is not None:
            return str(row[field])
    return str(number)
