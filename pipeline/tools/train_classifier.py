"""``refinery train-classifier``: a fastText supervised classifier trained offline from
corpora the user names, DCLM's recipe by default (Li et al. 2024, "DataComp-LM", section 4.4:
a bigram fastText model, positives against negatives sampled to equal counts).

Each label's documents come from its corpora (Parquet or JSON lines, read as ``refinery run``
reads input), drawn at random by seed to the same count per label, and prepared exactly as
the classifier stage prepares text (``TextPreparation``), so a model scores what it was
trained on. A held-out share of each label is never trained on; the metrics are measured on
it: per label precision, recall and F1 of the top label, and ROC-AUC of each label's
probability (one label against the rest). Training runs on one thread by default, which
makes the model a function of the data, the options and the seed.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.core import storage
from pipeline.stages.classifier.config import LABEL_PREFIX, TextPreparation
from pipeline.stages.classifier.text import prepare_texts
from pipeline.tools.train_tokenizer import sample_texts


@dataclass
class TrainingOptions:
    per_label: int = 200_000
    """Documents drawn per label (DCLM: 200k of each); every label gets as many as the
    smallest label has, up to this."""
    holdout: float = 0.1
    """Share of each label's documents held out for the metrics."""
    epoch: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    bucket: int = 2_000_000
    """Hash buckets of the word n-grams (fastText's default); the model holds
    ``bucket x dim`` floats, so a smaller value makes a smaller model."""
    min_count: int = 1
    """DCLM keeps rare words: the junk markers of web text are rare."""
    threads: int = 1
    quantize: bool = False
    """Also compress the model with product quantization (fastText ``quantize``; write
    ``.ftz``)."""
    seed: int = 0
    text_column: str = "text"
    prepare: TextPreparation = field(default_factory=TextPreparation)


def metrics_path(model_uri: str) -> str:
    """``models/quality.bin`` -> ``models/quality.metrics.json``."""
    name = PurePosixPath(model_uri).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return model_uri[: len(model_uri) - len(name)] + f"{stem}.metrics.json"


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half (Mann-Whitney U from average ranks)."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2  # average of ranks start+1 .. end
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _label_metrics(truth: list[str], predicted: list[str], probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    truth_a, predicted_a = np.array(truth, dtype=object), np.array(predicted, dtype=object)
    per_label = {}
    for i, label in enumerate(labels):
        tp = int(np.sum((predicted_a == label) & (truth_a == label)))
        fp = int(np.sum((predicted_a == label) & (truth_a != label)))
        fn = int(np.sum((predicted_a != label) & (truth_a == label)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "roc_auc": round(roc_auc(probs[:, i], truth_a == label), 4),
            "support": int(np.sum(truth_a == label)),
        }
    return {"accuracy": round(float(np.mean(truth_a == predicted_a)), 4), "labels": per_label}


def _train(train_path: str, model_path: str, options: TrainingOptions) -> None:
    import fasttext

    model = fasttext.train_supervised(
        input=train_path,
        epoch=options.epoch,
        lr=options.lr,
        dim=options.dim,
        wordNgrams=options.word_ngrams,
        bucket=options.bucket,
        minCount=options.min_count,
        thread=options.threads,
        seed=options.seed,
        verbose=0,
    )
    if options.quantize:
        model.quantize(input=train_path, qnorm=True, retrain=False)
    model.save_model(model_path)


def _train_in_child(train_path: str, model_path: str, options: TrainingOptions) -> None:
    """fastText keeps state between trainings in one process: the same data and seed train
    a different model, or diverge, the second time. A fresh process trains each model."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_train, (train_path, model_path, options))


def train_classifier(
    corpora: dict[str, list[str]], out: str, options: TrainingOptions, storage_options=None
) -> dict[str, Any]:
    """Train on ``corpora`` (label -> corpus URIs; the first label is the positive one of a
    binary model), write the model to ``out`` and its metrics beside it; return the metrics."""
    import fasttext

    if len(corpora) < 2:
        raise ValueError("name at least two labels (e.g. --positive and --negative)")
    rng = random.Random(options.seed)
    drawn = {}
    for label, uris in corpora.items():
        texts = [
            t for uri in uris for t in sample_texts(uri, options.text_column, 10**9, options.seed, storage_options)
        ]
        if not texts:
            raise ValueError(f"label '{label}': its corpora hold no non-blank text ({', '.join(uris)})")
        rng.shuffle(texts)
        drawn[label] = texts
    count = min(options.per_label, *(len(t) for t in drawn.values()))
    held = max(1, round(count * options.holdout))
    if count - held < 1:
        raise ValueError(f"too few documents to hold {options.holdout:.0%} out: {count} per label")
    train, test = [], []
    for label, texts in drawn.items():
        prepared = prepare_texts(pa.array(texts[:count], pa.string()), options.prepare)
        name = label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label
        test += [(name, t) for t in prepared[:held]]
        train += [(name, t) for t in prepared[held:]]
    rng.shuffle(train)
    labels = [label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label for label in corpora]
    with tempfile.TemporaryDirectory(prefix="refinery-classifier-") as tmp:
        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w", encoding="utf-8") as f:
            for label, text in train:
                f.write(f"{label} {text}\n")
        model_file = os.path.join(tmp, "model")
        try:
            _train_in_child(train_path, model_file, options)
        except RuntimeError as exc:
            if "NaN" not in str(exc):
                raise
            raise RuntimeError(
                f"fastText's training diverged ({exc}); try another --lr (e.g. half), fewer --epoch or another "
                "--dim: which settings diverge depends on the data"
            ) from None
        with open(model_file, "rb") as f:
            storage.write_bytes(out, f.read(), storage_options)
        model = fasttext.load_model(model_file)
    predicted_labels, probabilities = model.predict([t for _, t in test], k=-1)
    probs = np.zeros((len(test), len(labels)))
    for row, (names, p) in enumerate(zip(predicted_labels, probabilities)):
        for name, value in zip(names, p):
            if name in labels:
                probs[row, labels.index(name)] = value
    metrics = _label_metrics([label for label, _ in test], [names[0] for names in predicted_labels], probs, labels)
    metrics.update(
        {
            "model": out,
            "positive_label": labels[0],
            "roc_auc": metrics["labels"][labels[0]]["roc_auc"],
            "train_documents": len(train),
            "heldout_documents": len(test),
            "per_label": count,
            "options": {k: (v.model_dump() if isinstance(v, TextPreparation) else v) for k, v in vars(options).items()},
            "corpora": corpora,
        }
    )
    storage.write_bytes(
        metrics_path(out), (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode(), storage_options
    )
    return metrics
