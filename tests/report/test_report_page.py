"""report.html and the chart SVGs of a real run, without a browser: the page's structure,
that it names nothing on the network, and that the charts' data equal the report's counts."""

import json
import re
import subprocess
import sys

import pytest

from pipeline import run_job
from pipeline.report_page import CHARTS_DIR, charts, funnel_rows


@pytest.fixture(scope="module")
def two_snapshots(tmp_path_factory, sample_corpus, tokenizer_model):
    """Two runs into one output (the second keeps fewer documents), as a refresh makes."""
    import ray

    from pipeline.config import RayConfig
    from pipeline.runner import ensure_ray
    from tests.helpers import job_dict

    ensure_ray(RayConfig(num_cpus=2), None)
    out = tmp_path_factory.mktemp("report") / "out"
    stages = {"pii": {"enabled": True}, "language": {"enabled": True}, "quality": {"enabled": True}}
    first = run_job(
        job_dict(
            str(sample_corpus),
            str(out),
            str(tokenizer_model),
            stages=stages,
            report={"examples": False, "charts": True},
        )
    )
    stages["quality"]["gopher_quality"] = {"min_doc_words": 120}
    second = run_job(
        job_dict(str(sample_corpus), str(out), str(tokenizer_model), stages=stages, report={"charts": True})
    )
    yield out, first, second
    ray.shutdown()


def _specs(page: str) -> dict:
    return json.loads(re.search(r"const specs = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))


def test_the_page_is_self_contained_and_holds_every_chart(two_snapshots):
    out, _, second = two_snapshots
    page = (out / "report.html").read_text()
    assert second.page_uri.endswith("report.html") and (out / "report.html").exists()
    assert (out / "snapshots" / second.snapshot / "report.html").read_text() == page
    # nothing is fetched: no external script, style, image or frame, and a policy that forbids it
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert page.count("<script>") == 2 and "<script " not in page  # both inline
    assert not re.search(r"<(link|img|iframe|object|embed)\b", markup)
    assert "default-src 'none'" in page
    specs = _specs(page)
    keys = {"funnel", "lengths_chars", "lengths_tokens", "mixture", "copies", "shard_sizes", "phase_seconds", "phase_memory",
            "history_documents", "history_tokens", "languages", "language_scores", "pii", "lsh_s_curve",
            "quality_values"}  # fmt: skip
    assert keys <= set(specs), sorted(keys - set(specs))
    for key in specs:
        assert f'id="chart-{key}"' in page
        assert (out / CHARTS_DIR / f"{key}.svg").read_text().startswith("<svg")
    markdown = (out / "report.md").read_text()
    for key in specs:
        assert f"]({CHARTS_DIR}/{key}.svg)" in markdown
    for stage, reasons in second.report["rejected"].items():  # the rejects table lists each reason
        for reason in reasons:
            assert f"<td>{stage}</td><td>{reason}</td>" in page


def test_chart_data_equal_the_reports_counts(two_snapshots):
    out, first, second = two_snapshots
    report = second.report
    rows = funnel_rows(report)
    t = report["totals"]
    assert rows[0] == {"step": "input", "reason": "input", "documents": t["input_docs"]}
    assert sum(r["documents"] for r in rows[1:]) == t["input_docs"] == report["balance"]["input"]
    assert rows[-1]["documents"] == t["kept_docs"]
    specs = _specs((out / "report.html").read_text())
    assert specs["funnel"]["data"]["values"] == rows
    realized = {d: v["realized_tokens"] for d, v in report["mixture"]["domains"].items()}
    shares = {r["domain"]: r["share"] for r in specs["mixture"]["data"]["values"] if r["side"] == "realized"}
    assert shares == {d: n / sum(realized.values()) for d, n in realized.items()}
    assert sorted(r["tokens"] for r in specs["shard_sizes"]["data"]["values"]) == sorted(
        report["output_shards"]["sizes"]
    )
    assert sum(report["output_shards"]["sizes"]) == t["tokens"]
    history = specs["history_tokens"]["data"]["values"]
    assert [h["snapshot"] for h in history] == sorted([first.snapshot, second.snapshot])
    assert {h["snapshot"]: h["tokens"] for h in history} == {
        first.snapshot: first.report["totals"]["tokens"],
        second.snapshot: t["tokens"],
    }
    lengths = report["lengths"]  # every valid document read, and every one kept before sampling
    unsampled = sum(report["rejected"].get("mix", {}).values())
    assert sum(n for _, n in lengths["input_chars"]) == t["input_docs"] - report["rejected"]["validate"]["empty_text"]
    assert sum(n for _, n in lengths["kept_chars"]) == t["kept_docs"] + unsampled
    assert sum(n for _, n in lengths["kept_tokens"]) == t["kept_docs"] + unsampled
    # one valid document in 16 (seeded) is tokenized in annotate for the input's token lengths
    valid = t["input_docs"] - sum(report["rejected"]["validate"].values())
    sampled = sum(n for _, n in lengths["input_tokens_sample"])
    assert lengths["input_tokens_sample_rate"] == 16 and valid / 32 <= sampled <= valid / 8
    shares = [r for r in specs["lengths_tokens"]["data"]["values"] if r["documents of"] == "input (sampled)"]
    assert abs(sum(r["share"] for r in shares) - 1) < 1e-9
    chars = specs["lengths_chars"]["data"]["values"]
    assert sum(r["documents"] for r in chars if r["documents of"] == "kept") == t["kept_docs"] + unsampled
    scored = sum(sum(counts) for counts in report["language_scores"]["labels"].values())
    assert scored == t["input_docs"] - report["rejected"]["validate"]["empty_text"]  # language runs first
    pii = {r["entity"]: r["spans"] for r in specs["pii"]["data"]["values"]}
    assert pii == report["pii_replaced"] and pii
    # every document the quality rules saw (after validation and language ID) has a word count
    word_count = report["quality_values"]["gopher_word_count"]
    rejected = report["rejected"]
    reached = t["input_docs"] - sum(rejected["validate"].values()) - sum(rejected.get("language", {}).values())
    assert word_count["documents"] == reached - rejected.get("quality", {}).get("empty_text", 0)
    assert word_count["thresholds"] == [120.0, 100_000.0]  # the second run's setting
    p = word_count["percentiles"]
    assert 0 < p["p10"] <= p["p50"] <= p["p90"]
    counted = [r for r in specs["quality_values"]["data"]["values"] if r["mark"] == "count"]
    assert sum(r["documents"] for r in counted if r["rule"] == "gopher_word_count") == word_count["documents"]
    below = sum(n for v, n in word_count["distribution"] if v < 120 / 1.1)
    assert below <= rejected["quality"]["gopher_word_count"]  # those below the cut were rejected


def test_refinery_report_rebuilds_the_page_of_an_earlier_snapshot(two_snapshots):
    out, first, _ = two_snapshots
    folder = out / "snapshots" / first.snapshot
    (folder / "report.html").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", str(out), "--snapshot", first.snapshot],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"run report with charts: {folder / 'report.html'}"
    specs = _specs((folder / "report.html").read_text())
    assert specs["funnel"]["data"]["values"] == funnel_rows(first.report)
    assert "history_tokens" not in specs  # the first snapshot's page shows no later snapshot
    missing = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", str(out / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no report.json in" in missing.stderr


def test_without_charts_the_page_of_an_earlier_run_is_removed(two_snapshots, sample_corpus, tokenizer_model, tmp_path):
    from tests.helpers import job_dict

    out, _, _ = two_snapshots
    copy = tmp_path / "out"
    import shutil

    shutil.copytree(out, copy)
    result = run_job(job_dict(str(sample_corpus), str(copy), str(tokenizer_model), stages={"pii": {"enabled": True}}))
    assert result.page_uri is None
    assert not (copy / "report.html").exists() and not (copy / CHARTS_DIR).exists()
    assert "## Charts" not in (copy / "report.md").read_text()


def test_charts_come_from_report_json_alone(two_snapshots):
    out, _, second = two_snapshots
    from_disk = json.loads((out / "report.json").read_text())
    assert [c.spec for c in charts(from_disk)] == [c.spec for c in charts(second.report)]


PLANTED_PII = ["@example.org", "555-01", "192.0.2.", "198.51.100.", "4111 1111", "DE89 3704", "078-05-1120"]


def test_examples_show_each_reason_a_duplicate_beside_its_survivor_and_no_pii(two_snapshots, sample_corpus):
    out, first, second = two_snapshots
    assert "examples" not in first.report  # report.examples: false
    assert "## Examples of what each rule did" not in (out / "snapshots" / first.snapshot / "report.md").read_text()
    examples, rejected = second.report["examples"], second.report["rejected"]
    for stage, reasons in rejected.items():
        if stage == "mix":
            continue  # the mixture's sampling keeps no examples
        for reason, n in reasons.items():
            chosen = examples[stage][reason]
            assert 1 <= len(chosen) <= 3 and len(chosen) == min(3, n), (stage, reason)
    assert {"quality", "exact_dedup", "near_dedup"} <= set(examples)
    for example in examples["near_dedup"]["near_duplicate"] + examples["exact_dedup"]["exact_duplicate"]:
        assert example["survivor"]["id"] == example["detail"]["duplicate_of"] and example["survivor"]["text"]
    for reason, chosen in examples["quality"].items():  # what the rule saw: the start of each text
        assert all(e["text"] and e["shard"] and e["row"] >= 0 for e in chosen), reason
    texts = [
        t
        for reasons in examples.values()
        for chosen in reasons.values()
        for e in chosen
        for t in (e["text"], (e.get("survivor") or {}).get("text"))
        if t
    ]
    assert texts and not [t for t in texts if any(value in t for value in PLANTED_PII)]
    page, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "## Examples of what each rule did" in markdown and "kept instead, `" in markdown
    for stage, reasons in rejected.items():
        for reason in reasons:
            assert f'data-stage="{stage}" data-reason="{reason}"' in page
    assert "<mark>" in page  # a duplicate's shared text
    # the same job and seed choose the same examples
    again = json.loads((out / "snapshots" / second.snapshot / "report.json").read_text())["examples"]
    assert again == json.loads(json.dumps(examples))
