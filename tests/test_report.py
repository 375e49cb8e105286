"""The balance check fails a run loudly, and no manifest is committed."""

import json

import pytest

from pipeline import run_job
from pipeline.config import load_job_spec
from pipeline.core.markers import AnnotateMarker, DedupMarker, PackMarker, RunRecord, SampleMarker, TokenizeMarker
from pipeline.report import AccountingError, build_report, check_balance, render_markdown


def _run(spec, input_docs=10, annotated=8, rejected=2, kept=6, removed=1, unsampled=1, packed_copies=7):
    annotate = [
        AnnotateMarker(
            shard_key="s",
            uri="u/s.parquet",
            fingerprint={},
            config_hash="a",
            input_docs=input_docs,
            input_bytes=100,
            annotated_docs=annotated,
            annotated_bytes=80,
            rejected={"validate": {"empty_text": rejected}},
            kept_counts={"language": {"en": 8}},
        )
    ]
    tokenize = [
        TokenizeMarker(
            shard_key="s",
            uri="u/s.parquet",
            config_hash="t",
            annotated_docs=annotated,
            removed={"exact_dedup": {"exact_duplicate": removed}},
            tokenized_docs=annotated - removed,
        )
    ]
    sample = [
        SampleMarker(
            shard_key="s",
            config_hash="m",
            kept_docs=kept,
            kept_bytes=60,
            copies=7,
            tokens=70,
            unsampled={"mix": {"not_sampled": unsampled}},
        )
    ]
    plan = {
        "unit": "tokens",
        "available": {"web": 80},
        "weights": {"web": 1.0},
        "target": {"web": 70.0},
        "rates": {"web": 0.875},
        "realized": {"web": {"docs": kept, "copies": 7, "tokens": 70}},
        "budget": 70.0,
        "notes": [],
        "max_epochs": 4.0,
        "total_copies": 7,
    }
    pack = [
        PackMarker(index=0, config_hash="p", documents=packed_copies, tokens=70, sequences=1, domain_tokens={"web": 70})
    ]
    return RunRecord(
        spec=spec,
        annotate=annotate,
        dedup=DedupMarker(input_hash="d", removed_total=removed),
        tokenize=tokenize,
        sample=sample,
        plan=plan,
        pack=pack,
        snapshot="00001-abcdef12",
    )


def test_report_balances_and_shows_each_capability(tokenizer_model):
    spec = load_job_spec(
        {
            "name": "r",
            "input": {"uri": "in"},
            "output": {"uri": "out"},
            "stages": {"tokenize": {"model": str(tokenizer_model)}},
        },
        check_files=False,
    )
    report = build_report(_run(spec))
    assert report.data["balance"]["ok"] and report.data["totals"]["rejected_docs"] == 4
    assert report.data["rejected"] == {
        "validate": {"empty_text": 2},
        "exact_dedup": {"exact_duplicate": 1},
        "mix": {"not_sampled": 1},
    }
    # Enabled by default: language and both dedups; near dedup's section is computed from its config.
    assert report.data["languages_after_annotate"] == {"en": 8}
    assert report.data["near_dedup"]["bands"] * report.data["near_dedup"]["rows"] <= 128
    assert "pii_replaced" not in report.data and "perplexity_buckets" not in report.data
    check_balance(report.data)
    markdown = render_markdown(report)
    assert "Counts balance: **yes**" in markdown and "## Languages after annotate" in markdown
    assert markdown.index("## Languages after annotate") < markdown.index("## Near-duplicate LSH")
    # Rejects in the order stages run (not alphabetical), each with a subtotal and its share.
    section = markdown.split("## Rejected, by stage and reason")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| **validate** | all reasons | **2** | **20.0%** |",
        "| validate | empty_text | 2 | 20.0% |",
        "| **exact_dedup** | all reasons | **1** | **10.0%** |",
        "| exact_dedup | exact_duplicate | 1 | 10.0% |",
        "| **mix** | all reasons | **1** | **10.0%** |",
        "| mix | not_sampled | 1 | 10.0% |",
    ]

    lost = build_report(_run(spec, packed_copies=6))
    assert not lost.data["balance"]["ok"] and "Counts balance: **NO**" in render_markdown(lost)
    with pytest.raises(AccountingError, match="document copies planned 7, packed 6"):
        check_balance(lost.data)
    unbalanced_shard = build_report(_run(spec, input_docs=11))
    with pytest.raises(AccountingError, match="unbalanced shards: u/s.parquet"):
        check_balance(unbalanced_shard.data)


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
