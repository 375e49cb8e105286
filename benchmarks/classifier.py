"""Model-based quality classifiers, on real text from ../shared/data:

1. Quality: ``refinery train-classifier`` (DCLM's recipe, default options) on well-edited
   reference text against lower-quality text (``benchmarks/quality_corpora.py``); its
   held-out precision, recall, F1 and ROC-AUC.
2. Throughput: the classifier stage (that model, scoring and deciding, on 1,024-row batches)
   against what an expert writes with fastText: the same prepared texts, one
   ``predict(texts, k=-1)`` call per classifier, the label's probability picked out in
   Python; with one classifier and with three. Documents: web-like real text
   (``benchmarks/web_like.py``). Interleaved rounds, each in a fresh process, one core.

    python -m benchmarks classifier --docs 20000 --rounds 5
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from benchmarks import common

MODEL_DIR = common.ROOT / "benchmarks" / "results" / "classifier-model"


def train_quality_model(work: Path) -> dict:
    from benchmarks.quality_corpora import write_corpora

    counts = write_corpora(common.shared_data("."), work / "corpora")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model = MODEL_DIR / "quality.bin"
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "train-classifier",
        str(model),
        "--positive",
        str(work / "corpora" / "reference"),
        "--negative",
        str(work / "corpora" / "lower"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=common.ROOT)
    seconds = time.perf_counter() - started
    metrics = json.loads((MODEL_DIR / "quality.metrics.json").read_text())
    return {
        "command": "refinery train-classifier MODEL --positive reference/ --negative lower/ (defaults)",
        "corpora_documents": counts,
        "train_seconds": round(seconds, 1),
        "model_bytes": model.stat().st_size,
        "metrics": {k: metrics[k] for k in ("roc_auc", "accuracy", "labels", "per_label", "heldout_documents")},
    }


def _web_like_texts(docs: int) -> list[str]:
    from benchmarks.web_like import web_like_documents

    return web_like_documents(common.shared_data("."), docs, pii_rate=0.0, seed=5)


def sides(docs: int, classifiers: int) -> dict:
    """The two sides, built in the process that times them."""
    import fasttext

    from pipeline.core import columns as cols
    from pipeline.stages.classifier import ClassifierConfig, Classifiers, TextPreparation, prepare_texts

    model_path = str(MODEL_DIR / "quality.bin")
    table = pa.table({cols.TEXT: _web_like_texts(docs)})
    entries = [{"name": f"q{i}", "model": model_path, "label": "hq", "min_score": 0.01} for i in range(classifiers)]
    stage = Classifiers(ClassifierConfig(enabled=True, classifiers=entries))
    stage.setup()
    raw = fasttext.load_model(model_path)
    batches = common.batches(table)

    def refinery():
        for batch in batches:
            stage(batch)

    def fasttext_predict():
        for batch in batches:
            texts = prepare_texts(batch.column(cols.TEXT), TextPreparation())
            for _ in range(classifiers):
                labels, probs = raw.predict(texts, k=-1)
                [dict(zip(names, p)).get("__label__hq", 0.0) for names, p in zip(labels, probs)]

    return {"refinery": refinery, "fasttext_predict": fasttext_predict}


def bench_classifier(docs: int, rounds: int) -> dict:
    with common.scratch() as work:
        quality = train_quality_model(work)
    print(json.dumps(quality["metrics"], indent=2), flush=True)
    nbytes = sum(len(t.encode()) for t in _web_like_texts(docs))
    throughput = {}
    for classifiers in (1, 3):
        comparison = common.interleaved(
            "benchmarks.classifier:sides",
            {"docs": docs, "classifiers": classifiers},
            rounds,
            reference="fasttext_predict",
            candidates=["refinery"],
        )
        throughput[f"{classifiers}_classifiers"] = {
            "vs_fasttext_predict": comparison,
            "refinery_mb_per_s_per_core": nbytes / comparison["median_seconds"]["refinery"] / 1e6,
            "refinery_docs_per_s_per_core": docs / comparison["median_seconds"]["refinery"],
        }
    return {"documents": docs, "bytes": nbytes, "quality": quality, "throughput": throughput}


def main(argv: list[str]) -> None:
    parser = common.parser("classifier", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    common.write_result("classifier", argv, bench_classifier(args.docs, args.rounds))
