"""A corpus in JSON lines (plain, gzip, zstd, a file with no suffix; dolma's layout with nested
metadata) runs to the same result as the same documents in Parquet, and lines that hold no
document are quarantined with their file and line number."""

import gzip
import json

import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline import run_job
from pipeline.core.progress import Progress
from tests.helpers import job_dict

pytestmark = pytest.mark.usefixtures("ray_local")

WRITERS = {
    ".jsonl": lambda data: data,
    ".json.gz": gzip.compress,
    ".json.zst": lambda data: zstandard.ZstdCompressor().compress(data),
    "": gzip.compress,  # no suffix: the content says gzip, then JSON lines
}


@pytest.fixture(scope="module")
def as_json_lines(sample_corpus, tmp_path_factory):
    """The sample corpus's shards as JSON lines in dolma's layout (id, text, metadata), one
    compression per shard, plus a file of lines that are no documents."""
    root = tmp_path_factory.mktemp("jsonl") / "corpus"
    root.mkdir()
    shards = sorted(sample_corpus.glob("*.parquet"))
    assert len(shards) == len(WRITERS)
    for shard, suffix in zip(shards, WRITERS):
        lines = [
            json.dumps(
                {"id": r["id"], "text": r["text"], "metadata": {"domain": r["domain"], "url": r["url"]}},
                ensure_ascii=False,
            )
            for r in pq.read_table(shard).to_pylist()
        ]
        (root / (shard.stem + suffix)).write_bytes(WRITERS[suffix](("\n".join(lines) + "\n").encode()))
    (root / "zz-bad.jsonl").write_bytes(b'{"id": "b0", "text": "cut\n\n[1, 2]\n{"id": "b3", "text": "\xff"}\n')
    return root


@pytest.fixture(scope="module")
def from_parquet(sample_corpus, tokenizer_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("parquet") / "out"
    return run_job(job_dict(str(sample_corpus), str(out), str(tokenizer_model)), progress=Progress(quiet=True)).report


def _same_as_parquet(from_jsonl: dict, from_parquet: dict) -> None:
    assert from_jsonl["balance"]["ok"]
    assert from_jsonl["rejected"] == from_parquet["rejected"]
    assert from_jsonl["mixture"] == from_parquet["mixture"]
    bad_lines = {"invalid_json": 1, "not_a_json_object": 1, "invalid_utf8": 1}
    assert from_jsonl["quarantined"] == {**from_parquet["quarantined"], **bad_lines}
    for key in ("kept_docs", "tokens", "document_copies", "rejected_docs"):
        assert from_jsonl["totals"][key] == from_parquet["totals"][key], key
    assert from_jsonl["totals"]["input_docs"] == from_parquet["totals"]["input_docs"] + 3


def test_json_lines_from_s3_give_the_same_result(
    as_json_lines, from_parquet, tokenizer_model, s3, s3_endpoint, tmp_path
):
    s3.mkdir("jsonl-bucket")
    for path in sorted(as_json_lines.iterdir()):
        s3.put(str(path), f"jsonl-bucket/in/{path.name}")
    options = {"endpoint_url": s3_endpoint}
    job = job_dict(
        "s3://jsonl-bucket/in",
        str(tmp_path / "out"),
        str(tokenizer_model),
        input={"domain_column": "metadata.domain", "url_column": "metadata.url", "storage_options": options},
    )
    _same_as_parquet(run_job(job, progress=Progress(quiet=True)).report, from_parquet)


def test_json_lines_give_the_same_result_as_parquet(as_json_lines, from_parquet, tokenizer_model, tmp_path):
    """Mutation that fails it: readers._field ignores dotted paths (no domains: the mixture
    and its rejects differ)."""
    job = job_dict(
        str(as_json_lines),
        str(tmp_path / "jsonl"),
        str(tokenizer_model),
        input={"domain_column": "metadata.domain", "url_column": "metadata.url"},
    )
    from_jsonl = run_job(job, progress=Progress(quiet=True)).report
    _same_as_parquet(from_jsonl, from_parquet)

    quarantine = [
        r for p in sorted((tmp_path / "jsonl" / "quarantine").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    bad = sorted(
        (r["row"], r["quarantine_reason"], r["quarantine_detail"])
        for r in quarantine
        if r["source_uri"].endswith("zz-bad.jsonl")
    )
    assert [(row, reason) for row, reason, _ in bad] == [
        (0, "invalid_json"),
        (27, "not_a_json_object"),
        (34, "invalid_utf8"),
    ]  # rows are the lines' byte offsets
    assert [detail.split(":")[0] for *_, detail in bad] == ["line 1 (byte 0)", "line 3 (byte 27)", "line 4 (byte 34)"]
