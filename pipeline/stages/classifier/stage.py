"""Model-based classifiers: each named fastText model scores every document, and the
scores become columns, threshold decisions and, optionally, the document's domain.

Scores are exactly what fastText's own ``predict(texts, k=-1)`` gives for the prepared
text (``text.prepare_texts``): the probability of the entry's ``label``. Thresholds on the
score are decided here, per document; percentile cuts of the whole run are decided by the
global stage (``percentiles.ClassifierPercentiles``) from these columns, so a cut can be
re-made without scoring again.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import LANG
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.classifier.config import LABEL_PREFIX, ClassifierEntry, resolve_label
from pipeline.stages.classifier.text import prepare_texts

HISTOGRAM_BINS = 20
"""Score histogram per classifier in the report: bins of width 0.05 over [0, 1]."""


def below_reason(name: str) -> str:
    return f"classifier_{name}_below"


def above_reason(name: str) -> str:
    return f"classifier_{name}_above"


class _Loaded:
    """One entry with its model and the model's spelling of the labels it names."""

    def __init__(self, entry: ClassifierEntry, model) -> None:
        labels = list(model.labels)
        self.entry = entry
        self.model = model
        self.label = resolve_label(entry.label, labels) if entry.label else None
        self.route = (
            {resolve_label(label, labels): domain for label, domain in entry.route.labels.items()}
            if entry.route
            else {}
        )
        # the named label's probability needs every label's; the top label alone needs one
        self.k = -1 if (self.label is not None or "all_labels" in entry.columns_written) else 1


class Classifiers(DocumentStage):
    name = "classifier"

    def setup(self) -> None:
        import fasttext

        models = {}
        self.loaded = []
        for entry in self.config.classifiers:
            if entry.model not in models:
                with storage.local_path(entry.model, self.config.storage_options) as path:
                    models[entry.model] = fasttext.load_model(path)
            self.loaded.append(_Loaded(entry, models[entry.model]))
        self.histograms: dict[str, np.ndarray] = {}

    def take_stats(self) -> dict[str, list[int]] | None:
        """Per classifier, the scored documents' score histogram (``HISTOGRAM_BINS`` bins)."""
        stats = {name: counts.tolist() for name, counts in self.histograms.items()}
        self.histograms = {}
        return stats or None

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        counts: dict[str, int] = {}
        for loaded in self.loaded:
            entry = loaded.entry
            if "score" in entry.columns_written:
                counts[f"{entry.name}:scored"] = kept.num_rows - kept.column(entry.score_column).null_count
        if cols.ROUTED_DOMAIN in kept.column_names:
            for domain, n in _value_counts(kept.column(cols.ROUTED_DOMAIN)).items():
                counts[f"routed:{domain}"] = n
        return counts

    def process(self, docs: pa.Table) -> StageOutput:
        reasons = np.full(docs.num_rows, None, dtype=object)
        routed = np.full(docs.num_rows, None, dtype=object)
        if cols.ROUTED_DOMAIN in docs.column_names:  # an earlier stage's routing stands
            routed = np.array(docs.column(cols.ROUTED_DOMAIN).to_pylist(), dtype=object)
        text = docs.column(cols.TEXT)
        langs = docs.column(LANG).to_numpy(zero_copy_only=False) if LANG in docs.column_names else None
        prepared: dict[tuple, list[str]] = {}
        for loaded in self.loaded:
            entry = loaded.entry
            rows = np.arange(docs.num_rows)
            if entry.languages and langs is not None:
                rows = np.flatnonzero(np.isin(langs, entry.languages))
            elif entry.languages:
                rows = rows[:0]
            key = (entry.prepare.model_dump_json(), tuple(entry.languages))
            if key not in prepared:
                chosen = text if len(rows) == docs.num_rows else text.take(pa.array(rows, pa.int64()))
                prepared[key] = prepare_texts(chosen, entry.prepare) if len(rows) else []
            labels, probs = loaded.model.predict(prepared[key], k=loaded.k) if len(rows) else ([], [])
            scores = _label_scores(labels, probs, loaded.label) if loaded.label is not None else None
            docs = self._add_columns(docs, loaded, rows, labels, probs, scores)
            if scores is not None:
                self._histogram(entry.name, scores)
                _decide(reasons, rows, scores, entry)
            if loaded.route:
                _route(routed, rows, labels, probs, loaded.route, entry.route.min_score)
        if any(loaded.route for loaded in self.loaded):
            column = pa.array(routed, pa.string())
            if cols.ROUTED_DOMAIN in docs.column_names:
                docs = docs.set_column(docs.column_names.index(cols.ROUTED_DOMAIN), cols.ROUTED_DOMAIN, column)
            else:
                docs = docs.append_column(cols.ROUTED_DOMAIN, column)
        return StageOutput(docs, pa.array(reasons, pa.string()))

    def _add_columns(
        self, docs: pa.Table, loaded: _Loaded, rows: np.ndarray, labels, probs, scores: np.ndarray | None
    ) -> pa.Table:
        n = docs.num_rows
        entry = loaded.entry
        outputs = entry.columns_written
        if "score" in outputs:
            docs = docs.append_column(entry.score_column, _scatter(n, rows, scores, pa.float32()))
        if "top_label" in outputs:
            top = [label[0].removeprefix(LABEL_PREFIX) for label in labels]
            docs = docs.append_column(f"{entry.score_column}_label", _scatter(n, rows, top, pa.string()))
            top_scores = np.array([p[0] for p in probs], np.float32)
            docs = docs.append_column(f"{entry.score_column}_label_score", _scatter(n, rows, top_scores, pa.float32()))
        if "all_labels" in outputs:
            maps = [
                list(zip((name.removeprefix(LABEL_PREFIX) for name in label), p.tolist()))
                for label, p in zip(labels, probs)
            ]
            docs = docs.append_column(
                f"{entry.score_column}_labels", _scatter(n, rows, maps, pa.map_(pa.string(), pa.float32()))
            )
        return docs

    def _histogram(self, name: str, scores: np.ndarray) -> None:
        bins = np.clip((scores.astype(np.float64) * HISTOGRAM_BINS).astype(np.int64), 0, HISTOGRAM_BINS - 1)
        counts = np.bincount(bins, minlength=HISTOGRAM_BINS)
        self.histograms[name] = self.histograms.get(name, np.zeros(HISTOGRAM_BINS, np.int64)) + counts


def _label_scores(labels: list, probs: list, label: str) -> np.ndarray:
    """The probability of ``label`` per document (0 where predict did not list it)."""
    out = np.zeros(len(labels), np.float32)
    for i, (names, p) in enumerate(zip(labels, probs)):
        try:
            out[i] = p[names.index(label)]
        except ValueError:
            pass
    return out


def _scatter(n: int, rows: np.ndarray, values, type_: pa.DataType) -> pa.Array:
    """``values`` of the scored ``rows`` in a column of ``n`` rows, null elsewhere."""
    if len(rows) == n:
        return pa.array(values, type_)
    full = np.full(n, None, dtype=object)
    for row, value in zip(rows.tolist(), values):
        full[row] = value
    return pa.array(full.tolist(), type_)


def _decide(reasons: np.ndarray, rows: np.ndarray, scores: np.ndarray, entry: ClassifierEntry) -> None:
    """Threshold rejects; a document keeps the first reason any classifier gave it."""
    undecided = reasons[rows] == None  # noqa: E711 (elementwise on an object array)
    if entry.min_score is not None:
        hit = undecided & (scores < np.float32(entry.min_score))
        reasons[rows[hit]] = below_reason(entry.name)
        undecided &= ~hit
    if entry.max_score is not None:
        hit = undecided & (scores > np.float32(entry.max_score))
        reasons[rows[hit]] = above_reason(entry.name)


def _route(routed: np.ndarray, rows: np.ndarray, labels, probs, route: dict[str, str], min_score: float) -> None:
    for row, names, p in zip(rows.tolist(), labels, probs):
        if routed[row] is None and names[0] in route and p[0] >= min_score:
            routed[row] = route[names[0]]


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.drop_null()).to_pylist() if column.null_count < len(column) else []
    return {c["values"]: c["counts"] for c in counts}
