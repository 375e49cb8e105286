"""Document shards' bytes: deterministic, and JSON lines that any JSON reader takes."""

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.phases.pack.documents import DocumentSchema, document_table, encode_documents


def table() -> pa.Table:
    return pa.table(
        {
            "id": ["a", "b"],
            "text": ["one", "two"],
            "perplexity": pa.array([float("nan"), 12.5]),
            "pii_counts": pa.array([[("EMAIL_ADDRESS", 2)], None], pa.map_(pa.string(), pa.int32())),
        }
    )


def test_json_lines_hold_null_for_nan_and_objects_for_maps():
    lines = gzip.decompress(encode_documents(table(), "jsonl.gz", 100)).decode().splitlines()
    rows = [json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name))) for line in lines]
    assert rows == [
        {"id": "a", "text": "one", "perplexity": None, "pii_counts": {"EMAIL_ADDRESS": 2}},
        {"id": "b", "text": "two", "perplexity": 12.5, "pii_counts": None},
    ]


def test_the_same_table_gives_the_same_bytes():
    for fmt in ("parquet", "jsonl.gz"):
        assert encode_documents(table(), fmt, 1) == encode_documents(table(), fmt, 1)
    back = pq.read_table(io.BytesIO(encode_documents(table(), "parquet", 1)))
    assert back.select(["id", "text"]).equals(table().select(["id", "text"]))
    assert back.column("pii_counts").to_pylist() == table().column("pii_counts").to_pylist()


def test_shards_share_one_schema_whatever_columns_their_pieces_have():
    prepared = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("url", pa.string()),
            ("input_fields", pa.string()),
            ("score", pa.int64()),
        ]
    )
    schema = DocumentSchema(prepared, ["source", "lang"])
    piece = pa.table(
        {
            "domain": ["web"],
            "id": ["x"],
            "text": ["t"],
            "url": [None],
            "input_fields": ['{"source": "cc", "lang": {"declared": "en"}}'],
            "copy": pa.array([0], pa.int32()),
        }
    )
    out = document_table([piece], schema)
    assert out.schema.names == ["id", "text", "domain", "url", "source", "lang", "score", "copy"]
    assert out.to_pylist() == [
        {
            "id": "x",
            "text": "t",
            "domain": "web",
            "url": None,
            "source": "cc",
            "lang": '{"declared": "en"}',
            "score": None,
            "copy": 0,
        }
    ]
    round_trip = DocumentSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert round_trip.prepared.equals(prepared) and round_trip.json_fields == ["source", "lang"]
