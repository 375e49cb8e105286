"""The balance check fails a run loudly, and no manifest is committed."""

import json

import pytest

from pipeline import run_job
from pipeline.report import AccountingError, build_report, check_balance, render_markdown


def _stats(input_docs=10, annotated=8, rejected=2, kept=6, removed=1, unsampled=1, packed_copies=7):
    annotate = [{"shard_key": "s", "uri": "u/s.parquet", "input_docs": input_docs, "input_bytes": 100,
                 "annotated_docs": annotated, "annotated_bytes": 80, "rejected": {"validate": {"empty_text": rejected}},
                 "quarantined": {}, "shard_quarantined": None}]
    tokenize = [{"shard_key": "s", "annotated_docs": annotated, "removed": {"exact_dedup": {"exact_duplicate": removed}},
                 "tokenized_docs": annotated - removed}]
    sample = [{"shard_key": "s", "kept_docs": kept, "kept_bytes": 60, "copies": 7, "tokens": 70,
               "unsampled": {"mix": {"not_sampled": unsampled}}}]
    plan = {"available_tokens": {"web": 80}, "weights": {"web": 1.0}, "target_tokens": {"web": 70.0},
            "rates": {"web": 0.875}, "realized": {"web": {"docs": kept, "copies": 7, "tokens": 70}},
            "budget_tokens": 70.0, "notes": [], "max_epochs": 4.0, "total_copies": 7}
    pack = [{"index": 0, "documents": packed_copies, "tokens": 70, "padding_tokens": 0, "sequences": 1,
             "domain_tokens": {"web": 70}}]
    return annotate, {"removed_total": removed}, tokenize, sample, plan, pack


@pytest.mark.usefixtures("ray_local")
def test_tampered_marker_stops_the_run_and_keeps_the_committed_snapshot(make_job, sample_corpus, tmp_path):
    out = tmp_path / "out"
    run_job(make_job(sample_corpus, out))
    committed = {name: (out / name).read_bytes() for name in ("latest.json", "manifest.json")}
    marker = sorted((out / "work" / "mix" / "_markers").glob("*.json"))[0]
    stats = json.loads(marker.read_text())
    stats["kept_docs"] += 1
    marker.write_text(json.dumps(stats))
    with pytest.raises(AccountingError):
        run_job(make_job(sample_corpus, out))
    # The snapshot the first run committed is still the latest, unchanged.
    assert {name: (out / name).read_bytes() for name in committed} == committed
    assert "Counts balance: **NO**" in (out / "report.md").read_text()
