"""The n-gram index of every eval item: built once per job, loaded by every worker."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import storage
from pipeline.core.hashing import short_hash
from pipeline.core.ngrams import MULTIPLIERS, ngram_hashes, unit_hashes, words
from pipeline.stages.contamination.config import ContaminationConfig
from pipeline.stages.contamination.eval_sets import item_name, item_text, iter_eval_set

if TYPE_CHECKING:
    from pipeline.config import JobSpec
    from pipeline.core.progress import Progress


def _whole_hash(unit_values: np.ndarray) -> np.uint64:
    with np.errstate(over="ignore"):
        return np.sum(unit_values * MULTIPLIERS[: len(unit_values)], dtype=np.uint64)


@dataclass
class ContaminationIndex:
    ngram: int
    hashes: np.ndarray  # uint64, sorted: every item's n-grams, each once per item
    items: np.ndarray  # int32, the item of each hash
    short_hashes: np.ndarray  # uint64, sorted: one hash per item shorter than ngram words
    short_items: np.ndarray  # int32
    short_lengths: np.ndarray  # int32, that item's word count
    item_ngrams: np.ndarray  # int32, distinct counting n-grams per item (1 for a short item)
    item_whole: np.ndarray  # bool, matched by its whole text: shorter than ngram, or no n-gram counts
    item_names: list[str]
    item_benchmarks: np.ndarray  # int16, index into benchmarks
    benchmarks: list[str]
    generic_ngrams: int = 0  # distinct (item, n-gram) pairs left out as uninformative

    _ARRAYS = (
        "hashes",
        "items",
        "short_hashes",
        "short_items",
        "short_lengths",
        "item_ngrams",
        "item_whole",
        "item_benchmarks",
    )

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta = {"ngram": self.ngram, "names": self.item_names, "benchmarks": self.benchmarks}
        meta = json.dumps({**meta, "generic_ngrams": self.generic_ngrams}).encode()
        np.savez(buffer, meta=np.frombuffer(meta, dtype=np.uint8), **{k: getattr(self, k) for k in self._ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContaminationIndex:
        arrays = np.load(io.BytesIO(data))
        meta = json.loads(arrays["meta"].tobytes())
        return cls(
            ngram=meta["ngram"],
            item_names=meta["names"],
            benchmarks=meta["benchmarks"],
            generic_ngrams=meta["generic_ngrams"],
            **{k: arrays[k] for k in cls._ARRAYS},
        )

    def summary(self) -> dict[str, Any]:
        return {
            "benchmarks": {b: int(np.sum(self.item_benchmarks == i)) for i, b in enumerate(self.benchmarks)},
            "ngrams": int(len(self.hashes) + len(self.short_hashes)),
            "generic_ngrams": self.generic_ngrams,
            "whole_items": int(self.item_whole.sum()),
            "bytes": int(sum(getattr(self, k).nbytes for k in self._ARRAYS)),
        }


def distinct_positions(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Positions of the distinct (first, second) pairs, in the pairs' sorted order."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    keep = np.ones(len(first), bool)
    keep[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return order[keep]


def distinct_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (first, second) pairs, sorted."""
    positions = distinct_positions(first, second)
    return first[positions], second[positions]


# One character of a script written without letters for sounds is a word, not a marker.
_IDEOGRAPH = r"^[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]$"


def informative_words(units: pa.ListArray) -> np.ndarray:
    """Per word (flat): whether it tells texts apart. Numbers and single letters (list
    markers, variables, the pieces of formulas and tables) do not."""
    flat = units.flatten()
    if len(flat) == 0:
        return np.zeros(0, bool)
    single = pc.and_(pc.equal(pc.utf8_length(flat), 1), pc.invert(pc.match_substring_regex(flat, _IDEOGRAPH)))
    return pc.invert(pc.or_(pc.utf8_is_numeric(flat), single)).to_numpy(zero_copy_only=False)


def informative_ngrams(units: pa.ListArray, docs: np.ndarray, starts: np.ndarray, n: int, needed: int) -> np.ndarray:
    """Per n-gram (``ngram_hashes``' document and start): whether at least ``needed`` of its
    words are informative."""
    if needed <= 0:
        return np.ones(len(docs), bool)
    informative = np.r_[0, np.cumsum(informative_words(units), dtype=np.int32)]
    first = units.offsets.to_numpy()[docs].astype(np.int64) + starts
    return informative[first + n] - informative[first] >= needed


def shared_by_many(hashes: np.ndarray, most: int | None) -> np.ndarray:
    """Per entry of the sorted (hash, item) pairs: whether its hash belongs to more than
    ``most`` items, that is whether its run of equal hashes is longer than ``most``."""
    if most is None or len(hashes) <= most:
        return np.zeros(len(hashes), bool)
    # 32-bit run numbers and flags: no 64-bit array per entry beside the index itself
    run = np.cumsum(np.r_[False, hashes[1:] != hashes[:-1]], dtype=np.int32)
    many = np.zeros(int(run[-1]) + 1, bool)
    many[run[:-most][hashes[:-most] == hashes[most:]]] = True
    return many[run]


def build_index(config: ContaminationConfig, batch_items: int = 5_000) -> ContaminationIndex:
    """Reads every eval set and hashes its items' n-grams (each distinct n-gram once per item).

    Only informative n-grams count: with at least ``min_informative_words`` informative words
    (``informative_words``), and found in at most ``max_items_per_ngram`` items.
    The others are generic (a counting sequence, a table row, a template's instructions) and
    left out. An item without a counting n-gram keeps all of its n-grams and is matched
    whole: by all of them, as an item shorter than n is by the hash of all its words."""
    n = config.ngram
    names: list[str] = []
    benchmark_of: list[int] = []
    hash_parts, item_parts, strong_parts = [], [], []
    short_hashes, short_items, short_lengths = [], [], []
    for b, eval_set in enumerate(config.benchmarks):
        fields = eval_set.text_fields()
        texts = []
        for number, row in enumerate(iter_eval_set(eval_set)):
            texts.append(item_text(row, fields))
            names.append(item_name(row, number))
        for start in range(0, len(texts), batch_items):
            first_item = len(benchmark_of)
            chunk = texts[start : start + batch_items]
            benchmark_of += [b] * len(chunk)
            units = words(pa.array(chunk, pa.string()))
            unit_values = unit_hashes(units)
            values, docs, starts = ngram_hashes(units, n, unit_values)
            strong = informative_ngrams(units, docs, starts, n, config.min_informative_words)
            distinct = distinct_positions(docs, values)
            hash_parts.append(values[distinct])
            item_parts.append((docs[distinct] + first_item).astype(np.int32))
            strong_parts.append(strong[distinct])
            offsets = units.offsets.to_numpy()
            lengths = np.diff(offsets)
            for d in np.flatnonzero((lengths > 0) & (lengths < n)):
                short_hashes.append(_whole_hash(unit_values[offsets[d] : offsets[d + 1]]))
                short_items.append(first_item + d)
                short_lengths.append(lengths[d])
        del texts
    num_items = len(benchmark_of)
    hashes = np.concatenate(hash_parts) if hash_parts else np.zeros(0, np.uint64)
    del hash_parts
    items = np.concatenate(item_parts) if item_parts else np.zeros(0, np.int32)
    del item_parts
    counting = np.concatenate(strong_parts) if strong_parts else np.zeros(0, bool)
    del strong_parts
    order = np.argsort(hashes)  # introsort: no scratch copy of 8 bytes per n-gram
    hashes = hashes[order]
    items = items[order]
    counting = counting[order]
    del order
    counting &= ~shared_by_many(hashes, config.max_items_per_ngram)
    total = np.bincount(items, minlength=num_items)
    item_ngrams = np.bincount(items[counting], minlength=num_items).astype(np.int32)
    item_whole = (item_ngrams == 0) & (total > 0)
    item_whole[short_items] = True
    keep = counting | item_whole[items]
    generic = int(len(keep) - keep.sum())
    if generic:
        hashes, items = hashes[keep], items[keep]
    del keep, counting
    item_ngrams = np.where(item_whole, total, item_ngrams).astype(np.int32)
    item_ngrams[short_items] = 1
    short = np.array(short_hashes, np.uint64)
    short_order = np.argsort(short, kind="stable")
    return ContaminationIndex(
        ngram=n,
        hashes=hashes,
        items=items,
        short_hashes=short[short_order],
        short_items=np.array(short_items, np.int32)[short_order],
        short_lengths=np.array(short_lengths, np.int32)[short_order],
        item_ngrams=item_ngrams,
        item_whole=item_whole,
        item_names=names,
        item_benchmarks=np.array(benchmark_of, np.int16),
        benchmarks=[b.name for b in config.benchmarks],
        generic_ngrams=generic,
    )


def index_key(config: ContaminationConfig) -> str:
    """Names the index by what it is built from: n, the eval sets and their files' state."""
    payload = {
        "format": 2,
        "ngram": config.ngram,
        "min_informative_words": config.min_informative_words,
        "max_items_per_ngram": config.max_items_per_ngram,
        "benchmarks": [b.model_dump(mode="json", exclude={"storage_options"}) for b in config.benchmarks],
        "files": [storage.file_info(b.uri, b.storage_options) for b in config.benchmarks],
    }
    return short_hash(payload)


def prepare_index(spec: JobSpec, progress: Progress | None = None) -> dict[str, Any] | None:
    """Builds the job's index once and writes it to the work directory (kept for re-runs
    with the same eval sets); returns its summary."""
    import time

    from pipeline.core.layout import OutputLayout

    config = spec.stages.contamination
    if not config.enabled:
        return None
    uri = OutputLayout(spec.output.uri).stage_work("contamination", f"index-{index_key(config)}.npz")
    options = spec.output.storage_options
    if storage.exists(uri, options):
        return ContaminationIndex.from_bytes(storage.read_bytes(uri, options)).summary()
    started = time.perf_counter()
    index = build_index(config)
    storage.write_bytes(uri, index.to_bytes(), options)
    summary = index.summary()
    if progress is not None:
        items = sum(summary["benchmarks"].values())
        progress.log(
            f"contamination index: {items:,} eval items, {summary['ngrams']:,} n-grams, "
            f"{summary['bytes'] / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s"
        )
    return summary
