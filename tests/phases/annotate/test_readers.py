"""Input shards in any format: Parquet and JSON lines (plain, gzip, zstd), told apart by
content; nested fields by dotted path; lines that hold no document quarantined by number."""

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.core import columns as cols
from pipeline.phases.annotate.readers import open_source, sniff
from pipeline.phases.annotate.validation import InputConfig, InputValidation, ShardRejected

LINES = [
    json.dumps({"id": "d1", "text": "First document.", "metadata": {"url": "https://a.example/1", "lang": "en"}}),
    "",  # blank: not a document, but it keeps its line number
    json.dumps({"id": 2, "text": "Second, with an integer id.", "metadata": {"url": "https://a.example/2"}}),
    '{"id": "d3", "text": "cut off',  # invalid JSON
    json.dumps(["a", "list"]),  # not an object
    json.dumps({"id": "d5", "text": 42}),  # text is not a string
    json.dumps({"id": "d6"}),  # no text: validation quarantines it as null text
    json.dumps({"id": "d7", "text": "Seventh, flat.", "url": "https://b.example/7", "extra": [1, 2]}),
]


def _bytes(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _read(tmp_path, name: str, data: bytes, batch_rows: int = 3, **config):
    path = tmp_path / name
    path.write_bytes(data)
    validation = InputValidation(InputConfig(uri=str(tmp_path), **config))
    with open_source(str(path), "k", None, validation, batch_rows) as source:
        batches = list(source.batches())
    return source, batches


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("plain.jsonl", lambda b: b),
        ("dolma.json.gz", gzip.compress),
        ("dolma.json.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
        ("no-suffix-at-all", gzip.compress),
    ],
)
def test_json_lines_rows_fields_and_bad_lines(tmp_path, name, encode):
    """Mutation that fails it: _field ignores dotted paths (metadata.url comes back null)."""
    source, batches = _read(
        tmp_path, name, encode(_bytes(LINES)), id_column="id", url_column="metadata.url", domain_column=None
    )
    raw = pa.concat_tables([b.raw for b in batches])
    rows = [r for b in batches for r in b.rows.to_pylist()]
    bad = pa.concat_tables([b.bad for b in batches]).to_pylist()
    offsets = [sum(len(line.encode()) + 1 for line in LINES[:i]) for i in range(len(LINES))]
    assert rows == [offsets[i] for i in (0, 2, 6, 7)]  # each line's byte offset; the blank line 1 is skipped
    assert raw.column("text").to_pylist() == ["First document.", "Second, with an integer id.", None, "Seventh, flat."]
    assert raw.column("id").to_pylist() == ["d1", "2", "d6", "d7"]
    assert raw.column("metadata.url").to_pylist() == ["https://a.example/1", "https://a.example/2", None, None]
    assert [(b[cols.ROW], b[cols.QUARANTINE_REASON]) for b in bad] == [
        (offsets[3], "invalid_json"),
        (offsets[4], "not_a_json_object"),
        (offsets[5], "bad_text_type"),
    ]
    for b, line in zip(bad, (3, 4, 5)):
        assert b[cols.QUARANTINE_DETAIL].startswith(f"line {line + 1} (byte {offsets[line]}): ")
    assert bad[2][cols.QUARANTINE_DETAIL] == f"line 6 (byte {offsets[5]}): 'text' is a JSON int"
    assert all(b[cols.SOURCE_URI] == str(tmp_path / name) and b[cols.TEXT_BYTES] > 0 for b in bad)
    # batches of at most batch_rows lines that count (documents or bad lines)
    assert [b.raw.num_rows + b.bad.num_rows for b in batches] == [3, 3, 1]
    assert source.kind == ("jsonl" if name == "plain.jsonl" else "jsonl.zst" if name.endswith("zst") else "jsonl.gz")


def test_invalid_utf8_line_is_quarantined_and_the_rest_read(tmp_path):
    data = b'{"text": "good one"}\n{"text": "bad \xc3\x28 byte"}\n{"text": "good two"}\n'
    _, batches = _read(tmp_path, "x.jsonl", data)
    assert batches[0].raw.column("text").to_pylist() == ["good one", "good two"]
    [bad] = batches[0].bad.to_pylist()
    assert (bad[cols.ROW], bad[cols.QUARANTINE_REASON]) == (21, "invalid_utf8")
    assert bad[cols.QUARANTINE_DETAIL] == "line 2 (byte 21): byte 14 of the line is not valid UTF-8"


def test_parquet_is_read_by_content_whatever_its_name(tmp_path):
    table = pa.table({"id": ["a", "b"], "text": ["one", "two"], "url": ["u1", "u2"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    source, batches = _read(tmp_path, "part-00000", buffer.getvalue(), id_column="id")
    assert source.kind == "parquet" and source.num_rows == 2
    assert batches[0].raw.column("text").to_pylist() == ["one", "two"] and batches[0].rows.to_pylist() == [0, 1]


def test_what_no_content_or_name_tells_is_rejected_by_name(tmp_path):
    """Mutation that fails it: sniff falls back to JSON lines for anything."""
    with pytest.raises(ShardRejected) as rejected:
        _read(tmp_path, "README.txt", b"Some notes that are not data.\n")
    assert rejected.value.reason == "unknown_format" and "input.format" in rejected.value.detail
    assert sniff(b"", "empty.parquet") == "parquet" and sniff(b"", "empty.jsonl") == "jsonl"
    assert sniff(b"  {", "x") == "jsonl" and sniff(b"PAR1", "x.jsonl") == "parquet"


def test_a_cut_off_gzip_stream_rejects_the_shard(tmp_path):
    data = gzip.compress(_bytes(LINES * 200))
    with pytest.raises(ShardRejected) as rejected:
        _read(tmp_path, "cut.jsonl.gz", data[: len(data) // 2])
    assert rejected.value.reason == "unreadable_jsonl" and rejected.value.detail.startswith("after byte ")


def test_byte_ranges_hold_the_lines_that_begin_in_them(tmp_path):
    """Every line read once over the units of any split, a unit holding the lines that begin
    in its range; rows are the same byte offsets as the whole file's. Mutation that fails it:
    _first_line does not skip the line that began in the previous range."""
    lines = [json.dumps({"id": str(i), "text": "word " * (i % 7 + 1)}) for i in range(40)]
    data = _bytes(lines)
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    validation = InputValidation(InputConfig(uri=str(tmp_path), id_column="id"))

    def ids_and_rows(byte_range):
        with open_source(str(path), "k", None, validation, 7, byte_range=byte_range) as source:
            batches = list(source.batches())
        return [(i, r) for b in batches for i, r in zip(b.raw.column("id").to_pylist(), b.rows.to_pylist())]

    whole = ids_and_rows(None)
    assert [i for i, _ in whole] == [str(i) for i in range(40)]
    for cuts in (
        [0, len(data)],
        [0, 1, len(data)],
        [0, 50, 51, 300, 301, len(data)],
        list(range(0, len(data), 97)) + [len(data)],
    ):
        parts = [ids_and_rows((a, b)) for a, b in zip(cuts, cuts[1:])]
        assert [x for part in parts for x in part] == whole, cuts
    with pytest.raises(ShardRejected, match="cannot be read from an offset"):
        gz = tmp_path / "x.jsonl.gz"
        gz.write_bytes(gzip.compress(data))
        open_source(str(gz), "k", None, validation, 7, byte_range=(10, 20))
