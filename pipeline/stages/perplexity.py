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
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import documents as cols
from pipeline import storage
from pipeline.annotated import NODE, AnnotatedShards
from pipeline.stages.base import REMOVAL_SCHEMA, DocumentStage, GlobalStage, StageOutput
from pipeline.stages.language import LANG
from pipeline.stages.tokenize import load_sentencepiece

PERPLEXITY = "perplexity"

# CCNet's cc_net/text_normalizer.py UNICODE_PUNCT, unchanged.
UNICODE_PUNCT = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"', "」": '"',
    "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!", "（": "(", "）": ")",
    "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">",
    "【": "[", "】": "]", "％": "%", "►": "-",
}
_NON_PRINTING = "[\x00-\x1f\x7f-\x9f]"


def ccnet_normalize(line: str) -> str:
    """CCNet's ``text_normalizer.normalize`` with its defaults, one line at a time. The
    stage runs the same steps vectorized (``normalize_lines``); tests hold them equal."""
    line = line.strip()
    if not line:
        return line
    line = line.lower()
    line = "".join(c for c in unicodedata.normalize("NFD", line) if unicodedata.category(c) != "Mn")
    line = "".join("0" if c.isdecimal() else UNICODE_PUNCT.get(c, c) for c in line)
    return "".join(c for c in line if not (ord(c) < 32 or 127 <= ord(c) < 160))


def normalize_lines(lines: list[str]) -> pa.Array:
    """``ccnet_normalize`` over many lines. Python's own strip and lower run first (lower
    has context rules, such as Greek final sigma, that Arrow's per-character lowercasing
    lacks); the rest runs vectorized in Arrow."""
    out = pa.array([line.strip().lower() for line in lines], pa.string())
    out = pc.replace_substring_regex(pc.utf8_normalize(out, "NFD"), r"\p{Mn}+", "")
    out = pc.replace_substring_regex(out, r"\p{Nd}", "0")
    for char, replacement in UNICODE_PUNCT.items():
        out = pc.replace_substring(out, char, replacement)
    return pc.replace_substring_regex(out, _NON_PRINTING, "")


class LanguageModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lm: str
    """KenLM model URI: ARPA or KenLM binary (CCNet's ``{lang}.arpa.bin``)."""
    sp: str
    """The sentencepiece model the LM's training text was tokenized with (``{lang}.sp.model``)."""


class PerplexityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    models: dict[str, LanguageModel] = {}
    """Language label (as the language stage writes it) -> model pair."""
    storage_options: storage.StorageOptions = storage.StorageOptions()
    per_line: bool = True
    """Score each line (CCNet's DocLM); false scores the document as one line, which is
    what CCNet's published pipeline effectively did."""
    max_perplexity: float | None = Field(None, gt=0)
    """Reject documents above this perplexity (reason ``perplexity_above_max``)."""
    bucket_percentiles: tuple[float, float] = (30.0, 60.0)
    """Per language, the run's perplexity percentiles that split head | middle | tail
    (CCNet's 30 and 60)."""
    keep_buckets: list[Literal["head", "middle", "tail"]] = ["head", "middle", "tail"]
    """Buckets kept; the others are rejected as ``perplexity_<bucket>``. CCNet-style
    training sets keep head and middle."""
    relative_accuracy: float = Field(0.001, gt=0, le=0.05)
    """Of the percentile sketch: a cut point is within this fraction of the true
    percentile's value."""

    @model_validator(mode="after")
    def _percentiles_in_order(self) -> "PerplexityConfig":
        low, high = self.bucket_percentiles
        if not 0 < low < high < 100:
            raise ValueError("bucket_percentiles must be two increasing percentiles between 0 and 100")
        return self


class Perplexity(DocumentStage):
    name = "perplexity"

    def setup(self) -> None:
        import kenlm

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


class PerplexityBuckets(GlobalStage):
    """Splits each language's documents into head, middle and tail at percentiles of the
    whole run's perplexities, and removes the buckets not kept.

    The percentiles come from a DDSketch-style sketch (Masson, Rim and Lee 2019): counts of
    documents per logarithmic bucket of relative width ``relative_accuracy``. Counts per
    block add up exactly, so the cut points are the same however the run is split into
    blocks or workers (randomized sketches such as KLL are not), and each is within
    ``relative_accuracy`` of the true percentile's value.

    Cut points, once computed for a language, are kept in the dedup index: later runs on a
    grown input bucket new documents with the same cut points, so a document's bucket does
    not depend on which delivery it came in."""

    name = "perplexity"
    index_columns = (LANG, PERPLEXITY)

    def find_removals(self, shards: AnnotatedShards):
        known = (self.previous_state or {}).get("cutoffs", {})
        documents = shards.read([cols.SHARD, cols.ROW, cols.ID, LANG, PERPLEXITY])
        gamma = log_bucket_base(self.config.relative_accuracy)
        counts = documents.map_batches(
            _bucket_counts, fn_kwargs={"gamma": gamma, "first_new": shards.first_new_node, "skip": list(known)},
            batch_size=None, batch_format="pyarrow").take_all()
        cutoffs = dict(known) | percentile_cutoffs(counts, gamma, self.config.bucket_percentiles)
        self.state = {"cutoffs": cutoffs, "percentiles": list(self.config.bucket_percentiles)}
        dropped = [b for b in ("head", "middle", "tail") if b not in self.config.keep_buckets]
        return documents.map_batches(_bucket_removals, fn_kwargs={"cutoffs": cutoffs, "dropped": dropped},
                                     batch_format="pyarrow")


def log_bucket_base(relative_accuracy: float) -> float:
    return (1 + relative_accuracy) / (1 - relative_accuracy)


def _bucket_counts(block: pa.Table, gamma: float, first_new: int, skip: list[str]) -> pa.Table:
    """(lang, bucket, count) for this block's new documents with a perplexity."""
    new = block.filter(pc.greater_equal(block.column(NODE), first_new))
    langs = new.column(LANG).to_numpy(zero_copy_only=False)
    values = new.column(PERPLEXITY).to_numpy(zero_copy_only=False)
    has_lang = pc.is_valid(new.column(LANG)).to_numpy(zero_copy_only=False)
    scored = has_lang & ~np.isnan(values) & ~np.isin(langs, skip)
    langs, buckets = langs[scored], np.ceil(np.log(values[scored]) / np.log(gamma)).astype(np.int64)
    table = pa.table({"lang": pa.array(langs, pa.string()), "bucket": pa.array(buckets, pa.int64())})
    grouped = table.group_by(["lang", "bucket"]).aggregate([("bucket", "count")])
    return grouped.rename_columns(["lang", "bucket", "count"])


def percentile_cutoffs(rows: list[dict], gamma: float, percentiles: tuple[float, float]) -> dict[str, list[float]]:
    """Per language, the value at each percentile: the representative value of the bucket
    that holds that rank."""
    totals: dict[str, dict[int, int]] = {}
    for row in rows:
        per_bucket = totals.setdefault(row["lang"], {})
        per_bucket[row["bucket"]] = per_bucket.get(row["bucket"], 0) + row["count"]
    cutoffs = {}
    for lang, per_bucket in sorted(totals.items()):
        buckets = np.array(sorted(per_bucket))
        cumulative = np.cumsum([per_bucket[b] for b in buckets])
        ranks = [p / 100 * (cumulative[-1] - 1) for p in percentiles]
        at = np.searchsorted(cumulative, np.array(ranks), side="right")
        cutoffs[lang] = [float(2 * gamma ** b / (gamma + 1)) for b in buckets[at]]
    return cutoffs


def _bucket_removals(block: pa.Table, cutoffs: dict[str, list[float]], dropped: list[str]) -> pa.Table:
    langs = block.column(LANG).to_numpy(zero_copy_only=False)
    values = block.column(PERPLEXITY).to_numpy(zero_copy_only=False)
    bucket = np.full(block.num_rows, None, dtype=object)
    for lang, (head_below, tail_from) in cutoffs.items():
        mine = (langs == lang) & ~np.isnan(values)
        bucket[mine & (values < head_below)] = "head"
        bucket[mine & (values >= head_below) & (values < tail_from)] = "middle"
        bucket[mine & (values >= tail_from)] = "tail"
    remove = np.isin(bucket, dropped) if dropped else np.zeros(block.num_rows, bool)
    removed = block.filter(pa.array(remove))
    n = removed.num_rows
    return pa.table({
        cols.SHARD: removed.column(cols.SHARD), cols.ROW: removed.column(cols.ROW), cols.ID: removed.column(cols.ID),
        cols.REJECT_STAGE: pa.array(["perplexity"] * n, pa.string()),
        cols.REJECT_REASON: pa.array([f"perplexity_{b}" for b in bucket[remove]], pa.string()),
        cols.DUPLICATE_OF: pa.nulls(n, pa.string()),
    }, schema=REMOVAL_SCHEMA)
