"""The balance check fails a run loudly, and no manifest is committed."""

import json

import pytest

from pipeline import run_job
from pipeline.report import AccountingError, build_report, check_balance, render_markdown


def _stats(input_docs=10, annotated=8, rejected=2, kept=7, removed=1):
    annotate = [{"shard_key": "s", "uri": "u/s.parquet", "input_docs": input_docs, "input_bytes": 100,
                 "annotated_docs": annotated, "annotated_bytes": 80, "rejected": {"validate": {"empty_text": rejected}},
                 "quarantined": {}, "shard_quarantined": None}]
    pack = [{"shard_key": "s", "annotated_docs": annotated, "removed": {"exact_dedup": {"exact_duplicate": removed}},
             "kept_docs": kept, "kept_bytes": 70, "tokens": 50, "sequences": 1}]
    return annotate, {"removed_total": removed}, pack


def test_balanced_report_renders():
    report = build_report("j", "h", *_stats(), phases=[], peak_rss_bytes=None)
    assert report["balance"]["ok"]
    check_balance(report)
    assert "Counts balance: **yes**" in render_markdown(report)


def test_lost_document_fails_loudly_naming_the_shard():
    report = build_report("j", "h", *_stats(kept=6), phases=[], peak_rss_bytes=None)
    assert not report["balance"]["ok"]
    with pytest.raises(AccountingError, match=r"input 10 != kept 6 \+ rejected 3 \+ quarantined 0.*u/s.parquet"):
        check_balance(report)
    assert "Counts balance: **NO**" in render_markdown(report)


def test_unapplied_dedup_removal_fails():
    annotate, marker, pack = _stats()
    marker["removed_total"] = 2
    with pytest.raises(AccountingError, match="dedup removals committed 2, applied 1"):
        check_balance(build_report("j", "h", annotate, marker, pack, phases=[], peak_rss_bytes=None))


@pytest.mark.usefixtures("ray_local")
def test_tampered_marker_stops_the_run_without_manifest(make_job, sample_corpus, tmp_path):
    out = tmp_path / "out"
    run_job(make_job(sample_corpus, out))
    marker = sorted((out / "work" / "pack" / "_markers").glob("*.json"))[0]
    stats = json.loads(marker.read_text())
    stats["kept_docs"] += 1
    marker.write_text(json.dumps(stats))
    with pytest.raises(AccountingError):
        run_job(make_job(sample_corpus, out))
    assert not (out / "manifest.json").exists()
    assert "Counts balance: **NO**" in (out / "report.md").read_text()
