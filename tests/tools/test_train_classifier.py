"""``refinery train-classifier``: a model the stage loads, metrics measured on held-out text,
the same model from the same data and seed, and clear errors."""

import itertools
import json

import fasttext
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.model_files import fasttext_labels
from pipeline.tools.train_classifier import TrainingOptions, metrics_path, roc_auc, train_classifier

SMALL = ["--dim", "32", "--bucket", "20000", "--per-label", "2000"]


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(300), 1)  # many ties
    positive = rng.random(300) < 0.4
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(scores[positive], scores[~positive])
    ]
    assert roc_auc(scores, positive) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0


def test_cli_trains_a_model_the_stage_loads_and_writes_metrics(domain_corpora, tmp_path, capsys):
    out = tmp_path / "quality.bin"
    args = ["train-classifier", str(out), "--positive", str(domain_corpora["docs"]), "--negative"]
    assert main(args + [str(domain_corpora["web"]), *SMALL]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "quality.metrics.json").read_text())
    assert set(fasttext_labels(str(out), None)) == {"__label__hq", "__label__cc"}
    assert metrics["positive_label"] == "__label__hq" and metrics["roc_auc"] >= 0.9
    assert f"{metrics['roc_auc']:.4f}" in printed and "stages.classifier.classifiers" in printed
    per_label = metrics["per_label"]
    held = metrics["heldout_documents"]
    assert held == 2 * round(per_label * 0.1) and metrics["train_documents"] == 2 * per_label - held
    for label in ("__label__hq", "__label__cc"):
        m = metrics["labels"][label]
        assert 0 < m["precision"] <= 1 and 0 < m["recall"] <= 1 and m["support"] == held // 2
        assert m["f1"] == pytest.approx(2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"]), abs=2e-4)
    model = fasttext.load_model(str(out))
    assert model.get_dimension() == 32


def test_same_data_and_seed_train_the_same_model(domain_corpora, tmp_path):
    corpora = {"hq": [str(domain_corpora["docs"])], "cc": [str(domain_corpora["web"])]}
    options = TrainingOptions(dim=16, bucket=10_000, per_label=500)
    first = train_classifier(corpora, str(tmp_path / "a.bin"), options)
    second = train_classifier(corpora, str(tmp_path / "b.bin"), options)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert first["labels"] == second["labels"]
    other = train_classifier(
        corpora, str(tmp_path / "c.bin"), TrainingOptions(dim=16, bucket=10_000, per_label=500, seed=1)
    )
    assert (tmp_path / "c.bin").read_bytes() != (tmp_path / "a.bin").read_bytes()
    assert other["per_label"] == first["per_label"] == 500


def test_labels_quantize_and_text_preparation(domain_corpora, tmp_path):
    out = tmp_path / "topic.ftz"
    labels = [f"--label={d}={p}" for d, p in domain_corpora.items()]
    args = ["train-classifier", str(out), *labels, *SMALL, "--quantize", "--newlines", "join_lines", "--lowercase"]
    assert main(args) == 0
    assert set(fasttext_labels(str(out), None)) == {"__label__code", "__label__docs", "__label__web"}
    metrics = json.loads((tmp_path / "topic.metrics.json").read_text())
    assert metrics["options"]["prepare"] == {"max_chars": None, "newlines": "join_lines", "lowercase": True}
    assert metrics["options"]["quantize"] is True
    assert metrics["labels"]["__label__code"]["roc_auc"] >= 0.9
    assert out.read_bytes()[:4] == (793712314).to_bytes(4, "little")
    assert out.stat().st_size < (tmp_path / "topic.metrics.json").stat().st_size * 10_000


def test_errors_name_what_is_wrong(domain_corpora, tmp_path):
    with pytest.raises(ValueError, match="at least two labels"):
        train_classifier({"hq": [str(domain_corpora["docs"])]}, str(tmp_path / "m.bin"), TrainingOptions())
    with pytest.raises(FileNotFoundError, match="no input files"):
        train_classifier(
            {"hq": [str(domain_corpora["docs"])], "cc": [str(tmp_path / "nowhere")]},
            str(tmp_path / "m.bin"),
            TrainingOptions(),
        )
    with pytest.raises(SystemExit, match="NAME=URI"):
        main(["train-classifier", str(tmp_path / "m.bin"), "--label", "justaname"])
    assert metrics_path("s3://bucket/models/q.ftz") == "s3://bucket/models/q.metrics.json"


def test_real_reference_text_against_lower_quality_text(tmp_path, capsys):
    """Wikipedia, the Python docs and presidential speeches against forum and chat posts,
    shuffled Wikipedia and boilerplate pages: held-out ROC-AUC of at least 0.95."""
    from tests.helpers import SHARED_DATA

    if not (SHARED_DATA / "wikitext2").is_dir() or not (SHARED_DATA / "python_docs").is_dir():
        pytest.skip(f"real text not found at {SHARED_DATA}")
    from benchmarks.quality_corpora import write_corpora

    counts = write_corpora(SHARED_DATA, tmp_path / "corpora")
    assert min(min(side.values()) for side in counts.values()) > 500
    out = tmp_path / "quality.bin"
    reference, lower = tmp_path / "corpora" / "reference", tmp_path / "corpora" / "lower"
    args = ["train-classifier", str(out), "--positive", str(reference), "--negative", str(lower)]
    assert main([*args, "--bucket", "200000", "--dim", "32"]) == 0
    metrics = json.loads((tmp_path / "quality.metrics.json").read_text())
    assert metrics["roc_auc"] >= 0.95, metrics
    assert metrics["heldout_documents"] > 1000
    assert all(m["f1"] >= 0.9 for m in metrics["labels"].values()), metrics
