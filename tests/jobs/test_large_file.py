"""One big file keeps every core busy: a Parquet file is annotated as several work units (row
ranges that cross its row groups), an uncompressed JSON lines file as byte ranges at line
boundaries, and the run's result is that of the one-unit run."""

import json

import pyarrow.parquet as pq
import pytest

from pipeline import run_job
from pipeline.core.progress import Progress
from pipeline.tools.sample import write_sample_corpus
from tests.helpers import job_dict

pytestmark = pytest.mark.usefixtures("ray_local")
DOCS = 2000


@pytest.fixture(scope="module", params=["parquet", "jsonl"])
def one_big_file(request, tmp_path_factory):
    """The corpus as one file: Parquet in row groups of 300 rows (unit boundaries, every 500
    rows, fall inside them), or uncompressed JSON lines (split into four byte ranges)."""
    root = tmp_path_factory.mktemp("big")
    write_sample_corpus(str(root / "sample"), num_docs=DOCS, num_shards=1, seed=5)
    [shard] = sorted((root / "sample").glob("*.parquet"))
    corpus = root / "corpus"
    corpus.mkdir()
    table = pq.read_table(shard)
    if request.param == "parquet":
        pq.write_table(table, corpus / "everything.parquet", row_group_size=300)
        return corpus, {"unit_rows": 500}, {"unit_rows": 100_000}
    path = corpus / "everything.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in table.to_pylist()))
    quarter = path.stat().st_size // 4 + 1
    return corpus, {"unit_bytes": quarter}, {"unit_bytes": 10 * quarter}


def _rows(out, sink: str) -> set[tuple]:
    return {
        (r["id"], r.get("reject_stage"), r.get("reject_reason") or r.get("quarantine_reason"))
        for p in sorted((out / sink).glob("*.parquet"))
        for r in pq.read_table(p).to_pylist()
    }


def test_a_big_file_is_annotated_in_units_on_both_cores_with_the_same_result(one_big_file, tokenizer_model, tmp_path):
    """Mutations that fail it: ParquetSource ignores its row range, or JsonLinesSource its byte
    range (every unit reads the whole file: documents counted four times)."""
    corpus, split, whole_file = one_big_file
    runs = {}
    for name, settings in (("whole", whole_file), ("units", split)):
        out = tmp_path / name
        job = job_dict(str(corpus), str(out), str(tokenizer_model), input=settings)
        runs[name] = (out, run_job(job, progress=Progress(quiet=True)).report)
    (whole_out, whole), (units_out, units) = runs["whole"], runs["units"]

    markers = [json.loads(p.read_text()) for p in sorted((units_out / "work" / "annotate" / "_markers").glob("*.json"))]
    if "unit_rows" in split:
        assert [m["rows"] for m in markers] == [[0, 500], [500, 1000], [1000, 1500], [1500, 2000]]
        assert all(".r000000" in m["shard_key"] for m in markers)
    else:
        ranges = [m["byte_range"] for m in markers]
        assert len(ranges) == 4 and ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(".b000000" in m["shard_key"] for m in markers)
    assert all(m["shard_key"].startswith("everything") for m in markers)
    assert sum(m["input_docs"] for m in markers) == DOCS
    # Both cores: units of two worker processes ran at the same time.
    spans = [(m["worker_pid"], m["started_at"], m["started_at"] + m["seconds"]) for m in markers]
    assert any(p != q and a < d and c < b for p, a, b in spans for q, c, d in spans), spans
    assert len([m for m in json.loads((whole_out / "report.json").read_text())["shards"]]) == 1

    assert units["balance"]["ok"] and whole["balance"]["ok"]
    for key in ("input_docs", "kept_docs", "rejected_docs", "quarantined_docs", "tokens"):
        assert units["totals"][key] == whole["totals"][key], key
    assert units["rejected"] == whole["rejected"] and units["quarantined"] == whole["quarantined"]
    for sink in ("rejects/annotate", "rejects/dedup", "quarantine"):
        assert _rows(units_out, sink) == _rows(whole_out, sink), sink
