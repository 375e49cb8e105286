"""Input validation turns raw rows into documents, or quarantines them with a reason."""

import pyarrow as pa
import pytest

from pipeline.core import columns as cols
from pipeline.phases.annotate.validation import InputConfig, InputValidation, ShardRejected


def _validation(**kwargs):
    return InputValidation(InputConfig(uri="unused", id_column="id", **kwargs))


def test_validation_quarantines_rows_and_rejects_empty():
    raw = pa.table(
        {
            "id": ["a", "b", "c", "d", None],
            "text": ["good text", None, "x" * 101, "   \n", "fine"],
        }
    )
    result = _validation(max_document_bytes=100).validate(raw, "file.parquet", "shard-1", rows=10)
    assert result.docs.column(cols.ID).to_pylist() == ["a"]
    assert result.docs.column(cols.ROW).to_pylist() == [10]
    q = result.quarantined.to_pylist()
    assert [(r[cols.ROW], r[cols.QUARANTINE_REASON]) for r in q] == [
        (11, "null_text"),
        (12, "document_too_large"),
        (14, "null_id"),
    ]
    assert "101 bytes; input.max_document_bytes is 100" in q[1][cols.QUARANTINE_DETAIL]
    assert all(r[cols.SOURCE_URI] == "file.parquet" for r in q)
    assert result.rejected.column(cols.REJECT_REASON).to_pylist() == ["empty_text"]
    assert result.rejected.column(cols.ROW).to_pylist() == [13]


def test_validation_decodes_binary_and_quarantines_invalid_utf8():
    raw = pa.table({"id": ["a", "b"], "text": pa.array(["héllo".encode(), b"\xff\xfe bad"], pa.binary())})
    result = _validation().validate(raw, "f", "s", 0)
    assert result.docs.column(cols.TEXT).to_pylist() == ["héllo"]
    [bad] = result.quarantined.to_pylist()
    assert bad[cols.QUARANTINE_REASON] == "invalid_utf8" and bad[cols.ROW] == 1
    assert "byte 0" in bad[cols.QUARANTINE_DETAIL]


def test_validation_derives_ids_when_no_id_column():
    validation = InputValidation(InputConfig(uri="unused"))
    result = validation.validate(pa.table({"text": ["a", "b"]}), "f", "shard-x", 5)
    assert result.docs.column(cols.ID).to_pylist() == ["shard-x:5", "shard-x:6"]


def test_schema_check_names_the_problem():
    validation = _validation()
    with pytest.raises(ShardRejected, match="no column 'text'.*set input.text_column"):
        validation.check_schema(pa.schema([("id", pa.string()), ("body", pa.string())]), 3)
    with pytest.raises(ShardRejected, match="has type int64"):
        validation.check_schema(pa.schema([("id", pa.string()), ("text", pa.int64())]), 3)
