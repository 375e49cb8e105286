"""Perplexity under a per-language KenLM model, as in CCNet (Wenzek et al. 2019).

Each language label (from the language stage) names a KenLM model (ARPA or binary) and
the sentencepiece model its text was tokenized with; CCNet's published
``{lang}.arpa.bin`` + ``{lang}.sp.model`` pairs load unchanged, and
``refinery train-lm`` makes new ones.

Per line of a document: CCNet's normalization (``ccnet_normalize``: strip, lowercase,
accents removed, every digit to 0, CCNet's table of Unicode punctuation, control
characters removed), sentencepiece pieces joined by spaces, then KenLM's log10
probability of the line with sentence boundaries. The document's perplexity is
``10 ** (-sum of line scores / sum of (pieces + 1))``, CCNet's ``DocLM``. Lines that are
empty after normalization are skipped. CCNet's own pipeline normalizes whole documents
before tokenizing, which deletes their line breaks (they are control characters), so its
published numbers score each document as one line; ``per_line: false`` does the same.

Documents whose language has no model get a null perplexity and are never rejected here.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import sketch, storage
from pipeline.core.columns import LANG, PERPLEXITY
from pipeline.core.sentencepiece import load_sentencepiece
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.perplexity.normalize import normalize_lines

DISTRIBUTION_GAMMA = sketch.log_bucket_base(0.05)
"""The report's perplexity distribution: buckets 10% wide (the cut points use the run's finer sketch)."""


class Perplexity(DocumentStage):
    name = "perplexity"

    def take_stats(self) -> dict[str, dict[int, int]] | None:
        """Documents per language and perplexity bucket (``DISTRIBUTION_GAMMA``): the report's chart."""
        taken, self._distribution = self._distribution, {}
        return taken or None

    def setup(self) -> None:
        import kenlm

        self._distribution: dict[str, dict[int, int]] = {}
        self.models = {}
        for lang, pair in self.config.models.items():
            with storage.local_path(pair.lm, self.config.storage_options) as path, _native_stderr_silenced():
                lm = kenlm.Model(path)
            self.models[lang] = (lm, load_sentencepiece(pair.sp, self.config.storage_options))

    def process(self, docs: pa.Table) -> StageOutput:
        langs = np.array(docs.column(LANG).to_pylist(), dtype=object)
        perplexity = np.full(docs.num_rows, np.nan)
        text = docs.column(cols.TEXT).combine_chunks()
        for lang, (lm, sp) in self.models.items():
            rows = np.flatnonzero(langs == lang)
            if len(rows):
                perplexity[rows] = document_perplexity(text.take(pa.array(rows)), lm, sp, self.config.per_line)
        column = pa.array(perplexity, pa.float64(), mask=np.isnan(perplexity))
        for row in sketch.bucket_counts(langs, perplexity, DISTRIBUTION_GAMMA).to_pylist():
            into = self._distribution.setdefault(row[sketch.GROUP], {})
            into[row[sketch.BUCKET]] = into.get(row[sketch.BUCKET], 0) + row[sketch.COUNT]
        reasons = None
        if self.config.max_perplexity is not None:
            too_high = pc.fill_null(pc.greater(column, self.config.max_perplexity), False)
            reasons = pc.if_else(too_high, "perplexity_above_max", pa.nulls(docs.num_rows, pa.string()))
        return StageOutput(docs.append_column(PERPLEXITY, column), reasons)


@contextlib.contextmanager
def _native_stderr_silenced():
    """KenLM draws a progress bar on file descriptor 2 while it reads an ARPA file, once per
    worker; the run's own progress lines say what is happening."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def document_perplexity(text: pa.Array, lm, sp, per_line: bool) -> np.ndarray:
    """CCNet's DocLM perplexity of each document; NaN for a document with no scorable line."""
    if per_line:
        split = pc.split_pattern(text, "\n")
        lines, owner = split.flatten(), pc.list_parent_indices(split).to_numpy()
    else:
        lines, owner = text, np.arange(len(text))
    normalized = normalize_lines(lines.to_pylist())
    scorable = pc.greater(pc.utf8_length(normalized), 0).to_numpy(zero_copy_only=False)
    # One thread: a Ray worker holds one CPU.
    pieces = sp.encode(normalized.filter(pa.array(scorable)).to_pylist(), out_type=str, num_threads=1)
    scores = np.fromiter((lm.score(" ".join(p)) for p in pieces), np.float64, len(pieces))
    lengths = np.fromiter((len(p) + 1 for p in pieces), np.float64, len(pieces))
    owner = owner[scorable]
    log_sum = np.bincount(owner, weights=scores, minlength=len(text))
    length_sum = np.bincount(owner, weights=lengths, minlength=len(text))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(length_sum > 0, 10.0 ** (-log_sum / length_sum), np.nan)
