"""Classifiers in whole jobs on real Ray: a percentile band of the whole run, the same
however the input is split and kept for refreshes, and domains routed into the mixture."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import run_job
from pipeline.core.progress import Progress
from pipeline.tools.sample import build_sample_documents
from tests.jobs.test_documents_output import read_documents

pytestmark = pytest.mark.usefixtures("ray_local")


def _write_shards(root: Path, rows: list[dict], shards: int) -> Path:
    root.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(rows)), shards)):
        chosen = [rows[j] for j in part]
        table = pa.table({"id": [r["id"] for r in chosen], "text": [r["text"] for r in chosen]})
        pq.write_table(table, root / f"part-{i:02d}.parquet")
    return root


def _band_job(make_job, corpus: Path, out: Path, model: str) -> dict:
    entry = {"name": "q", "model": model, "label": "hq", "min_percentile": 70, "outputs": ["score", "top_label"]}
    return make_job(
        corpus,
        out,
        input={"uri": str(corpus), "id_column": "id", "unit_rows": 600},
        output={"uri": str(out), "kind": "documents"},
        stages={
            "classifier": {"enabled": True, "classifiers": [entry]},
            "exact_dedup": {"enabled": False},
            "near_dedup": {"enabled": False},
        },
        report={"charts": True},
    )


def test_top_percent_of_the_run_is_kept_however_split_and_on_refresh(make_job, quality_model, tmp_path):
    rows, _ = build_sample_documents(2400, seed=21)
    rows = [dict(r, id=f"doc{i}") for i, r in enumerate(rows) if r["text"].strip()]
    runs = {}
    for shards in (1, 5):
        corpus = _write_shards(tmp_path / f"in{shards}", rows, shards)
        out = tmp_path / f"out{shards}"
        result = run_job(_band_job(make_job, corpus, out, quality_model), progress=Progress(quiet=True))
        manifest = json.loads((out / "manifest.json").read_text())
        runs[shards] = (result.report, read_documents(out, manifest), corpus, out)

    report, documents, corpus, out = runs[5]
    kept_ids = set(documents.column("id").to_pylist())
    assert kept_ids == set(runs[1][1].column("id").to_pylist())  # the same documents however split
    assert abs(len(kept_ids) / len(rows) - 0.30) <= 0.01
    section = report["classifier"]["classifiers"]["q"]
    cut = section["cut_points"]["min_score"]
    assert runs[1][0]["classifier"]["classifiers"]["q"]["cut_points"]["min_score"] == cut
    assert (
        section["rejected"]["below"]
        == report["rejected"]["classifier"]["classifier_q_below"]
        == len(rows) - len(kept_ids)
    )
    assert sum(section["score_histogram"]) == len(rows)
    scores = documents.column("classifier_q").to_numpy()
    assert scores.min() >= cut
    rejects = pa.concat_tables(pq.read_table(p) for p in sorted((out / "rejects").rglob("*.parquet")))
    assert set(rejects.column("reject_reason").to_pylist()) == {"classifier_q_below"}
    assert report["balance"]["ok"]
    markdown = (out / "report.md").read_text()
    assert "## Classifier `q`" in markdown and "70th percentile" in markdown
    page = (out / "report.html").read_text()  # its chart: the histogram and the run's cut point
    specs = json.loads(page.split("const specs = ", 1)[1].split(";\n", 1)[0].replace("<\\/", "</"))
    bars, cuts = specs["classifier_q"]["data"]["values"], specs["classifier_q"]["layer"][1]["data"]["values"]
    assert [r["documents"] for r in bars] == section["score_histogram"] and cuts == [
        {"value": cut, "label": "min_score"}
    ]

    # a refresh: new documents are cut at the score the first run found
    new_rows, _ = build_sample_documents(300, seed=22)
    new_rows = [dict(r, id=f"new{i}") for i, r in enumerate(new_rows) if r["text"].strip()]
    pq.write_table(
        pa.table({"id": [r["id"] for r in new_rows], "text": [r["text"] for r in new_rows]}),
        corpus / "part-99.parquet",
    )
    refreshed = run_job(_band_job(make_job, corpus, out, quality_model), progress=Progress(quiet=True))
    assert refreshed.report["classifier"]["classifiers"]["q"]["cut_points"]["min_score"] == cut
    after = read_documents(out, json.loads((out / "manifest.json").read_text()))
    new_kept = {i for i in after.column("id").to_pylist() if i.startswith("new")}
    from pipeline.stages.classifier import ClassifierConfig, Classifiers

    stage = Classifiers(
        ClassifierConfig(enabled=True, classifiers=[{"name": "q", "model": quality_model, "label": "hq"}])
    )
    stage.setup()
    new_scores = stage.process(pa.table({"text": [r["text"] for r in new_rows]})).table.column("classifier_q")
    assert new_kept == {r["id"] for r, s in zip(new_rows, new_scores.to_pylist()) if s >= cut}
    assert kept_ids <= set(after.column("id").to_pylist())  # earlier decisions stand


def test_routed_domains_are_mixed_as_column_domains_are(make_job, sample_corpus, topic_model, tmp_path):
    """Documents the topic model calls code become domain code, the rest fall to the default,
    and the shard a domain rule names stays with the rule. The mix then realizes the weights
    on these domains exactly as it does when the same domains come from an input column."""
    from pipeline.core.layout import shard_key

    weights = {"code": 0.5, "other": 0.3, "ruled": 0.2}
    files = sorted(Path(sample_corpus).glob("*.parquet"))
    entry = {"name": "topic", "model": topic_model, "route": {"labels": {"code": "code"}, "min_score": 0.4}}
    stages = {
        "classifier": {"enabled": True, "classifiers": [entry]},
        "mix": {"domain_rules": [{"domain": "ruled", "files": files[0].name}], "weights": weights},
    }
    routed_out = tmp_path / "routed"
    routed = run_job(
        make_job(sample_corpus, routed_out, input={"uri": str(sample_corpus), "domain_column": None}, stages=stages),
        progress=Progress(quiet=True),
    )
    assert routed.report["balance"]["ok"]
    assert routed.report["classifier"]["routed_domains"]["code"] > 20
    domain_of = {}
    for path in sorted((routed_out / "work" / "tokenize").glob("*.parquet")):  # one per input shard, by key
        for r in pq.read_table(path, columns=["row", "domain"]).to_pylist():
            domain_of[(path.stem, r["row"])] = r["domain"]
    ruled_key = shard_key(str(sample_corpus), str(files[0]))
    assert {d for (key, _), d in domain_of.items() if key == ruled_key} == {"ruled"}  # the rule comes first
    assert {d for (key, _), d in domain_of.items() if key != ruled_key} == {"code", "other"}

    # the same domains as an input column, and no classifier
    column_corpus = tmp_path / "column"
    column_corpus.mkdir()
    for path in files:
        table = pq.read_table(path)
        key = shard_key(str(sample_corpus), str(path))
        domains = [domain_of.get((key, row), "other") for row in range(table.num_rows)]
        table = table.set_column(table.column_names.index("domain"), "domain", pa.array(domains))
        pq.write_table(table, column_corpus / path.name)
    column_out = tmp_path / "from_column"
    from_column = run_job(
        make_job(column_corpus, column_out, stages={"mix": {"weights": weights}}), progress=Progress(quiet=True)
    )
    realized = {d: v["realized_tokens"] for d, v in routed.report["mixture"]["domains"].items()}
    assert realized == {d: v["realized_tokens"] for d, v in from_column.report["mixture"]["domains"].items()}
    total = sum(realized.values())
    for domain, weight in weights.items():
        assert realized[domain] / total == pytest.approx(weight, abs=0.02)
