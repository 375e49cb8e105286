"""Benchmark contamination: find evaluation items inside training documents by word n-gram
overlap, and annotate, drop or excise them.

Text on both sides is normalized the same way: lower case, and words are the runs of
letters, digits and combining marks (everything else, punctuation included, separates
words). So case, whitespace and punctuation changes do not hide an item. Every eval item
contributes its word n-grams (default 13, GPT-3's choice), each hashed to 64 bits as a
polynomial over per-word blake2b hashes (``pipeline.minhash``). An item shorter than n
words contributes one hash of all its words, matched against the documents' runs of the
same length.

The index is sorted arrays of (n-gram hash, item) built once per job from the eval
files (``build_index``) and written to the work directory; every worker loads it and puts
a one-hash bitmap (32 bits per n-gram) in front of it, which most scanned n-grams stop at.
Lookups are exact on the 64-bit hash, so the only false matches are hash collisions: with
I indexed n-grams and Q scanned ones, about I·Q/2^64 (about one half for 10^7 indexed
n-grams against 10^12 scanned).

A document overlaps an item when at least ``min_matching_ngrams`` distinct n-grams of the
item occur in it and they cover at least ``min_item_fraction`` of the item's n-grams.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import documents as cols
from pipeline import storage
from pipeline.minhash import MULTIPLIERS, ngram_hashes, unit_hash, unit_hashes
from pipeline.stages.base import DocumentStage, StageOutput

CONTAMINATION = "contamination"
CONTAMINATION_TYPE = pa.list_(pa.struct([("benchmark", pa.string()), ("item", pa.string()),
                                         ("ngrams", pa.int32()), ("fraction", pa.float32())]))
# Fields whose text counts, for common eval set shapes.
PRESETS: dict[str, list[str]] = {
    "gsm8k": ["question", "answer"],
    "humaneval": ["prompt", "canonical_solution"],
    "mbpp": ["text", "code"],
    "mmlu": ["question", "choices"],
    "hellaswag": ["ctx", "endings"],
    "arc": ["question", "choices"],
    "truthfulqa": ["question", "best_answer"],
    "triviaqa": ["question", "answer"],
    "squad": ["context", "question"],
}
# Fields that name an item in the report, when the eval file has one.
_ID_FIELDS = ("task_id", "id", "idx", "question_id")
_NON_WORD = r"[^\p{L}\p{N}\p{M}\s]+"


class EvalSetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    uri: str
    """Local path or s3:// URI of the eval set: JSONL, JSONL.gz, Parquet or CSV."""
    fields: list[str] | None = None
    """The fields whose text counts (lists of strings are joined); default: the preset's."""
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]
    """A known shape: gsm8k (question, answer), humaneval (prompt, canonical_solution), mbpp,
    mmlu, hellaswag, arc, truthfulqa, triviaqa, squad."""
    storage_options: storage.StorageOptions = storage.StorageOptions()

    @model_validator(mode="after")
    def _fields_known(self) -> "EvalSetConfig":
        if not self.fields and not self.preset:
            raise ValueError(f"benchmark '{self.name}': name its text fields or a preset ({', '.join(PRESETS)})")
        return self

    def text_fields(self) -> list[str]:
        return self.fields or PRESETS[self.preset]


class ContaminationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    benchmarks: list[EvalSetConfig] = []
    ngram: int = Field(13, ge=3, le=64)
    """Words per n-gram (13 as in GPT-3)."""
    min_matching_ngrams: int = Field(1, ge=1)
    """Distinct n-grams of an item a document must contain to overlap it."""
    min_item_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of an item's n-grams a document must contain to overlap it."""
    action: Literal["annotate", "drop", "excise"] = "annotate"
    """``annotate``: only the ``contamination`` column; ``drop``: reject overlapping
    documents; ``excise``: cut each matched region with ``margin_chars`` on both sides, and
    reject the document if that leaves more than ``max_pieces`` pieces (GPT-3's recipe)."""
    margin_chars: int = Field(200, ge=0)
    max_pieces: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _benchmarks_named(self) -> "ContaminationConfig":
        if self.enabled and not self.benchmarks:
            raise ValueError("stages.contamination.benchmarks: name at least one eval set")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("stages.contamination.benchmarks: names must be unique")
        return self


class EvalSetError(ValueError):
    """An eval set that cannot be read, named by its benchmark."""


# --- eval sets --------------------------------------------------------------------------

def iter_eval_set(config: EvalSetConfig):
    """The eval set's rows, one at a time; errors name the benchmark and the file."""
    uri, label = config.uri, f"benchmark '{config.name}' ({config.uri})"
    try:
        data = storage.read_bytes(uri, config.storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise EvalSetError(f"{label}: cannot read the file: {exc}") from None
    lower = uri.lower()
    if lower.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise EvalSetError(f"{label}: not readable as gzip: {exc}") from None
        lower = lower[:-3]
    kind = lower.rsplit(".", 1)[-1]
    if kind not in ("parquet", "csv", "jsonl", "json"):
        raise EvalSetError(f"{label}: unknown format (use .jsonl, .jsonl.gz, .parquet or .csv)")
    fields = config.text_fields()
    count = 0
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        elif kind == "csv":
            rows = csv.DictReader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""))
        else:  # line by line from the bytes: no decoded copy of the whole file
            rows = (json.loads(line) for line in io.BytesIO(data) if line.strip())
        del data
        for row in rows:
            if count == 0:
                missing = [f for f in fields if f not in row]
                if missing:
                    raise EvalSetError(f"{label}: missing field(s) {', '.join(missing)}; it has "
                                       f"{', '.join(map(str, row))}")
            count += 1
            yield row
    except EvalSetError:
        raise
    except (ValueError, UnicodeDecodeError, pa.ArrowException, OSError) as exc:
        raise EvalSetError(f"{label}: not readable as {kind} (item {count + 1}): {exc}") from None
    if count == 0:
        raise EvalSetError(f"{label}: the file holds no items")


def item_text(row: dict[str, Any], fields: list[str]) -> str:
    parts = []
    for field in fields:
        value = row.get(field)
        if isinstance(value, (list, tuple)):
            parts += [str(v) for v in value if v is not None]
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def item_name(row: dict[str, Any], number: int) -> str:
    for field in _ID_FIELDS:
        if row.get(field) is not None:
            return str(row[field])
    return str(number)


# --- normalization and hashing ----------------------------------------------------------

def words(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Each text's normalized words: lower case, runs of letters, digits and marks."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    split = pc.utf8_split_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _NON_WORD, " "))
    flat = split.flatten()
    real = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(split).to_numpy()[real]
    offsets = np.r_[0, np.cumsum(np.bincount(parents, minlength=len(split)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(real)))


def _whole_hash(unit_values: np.ndarray) -> np.uint64:
    with np.errstate(over="ignore"):
        return np.sum(unit_values * MULTIPLIERS[: len(unit_values)], dtype=np.uint64)


# --- the index --------------------------------------------------------------------------

@dataclass
class ContaminationIndex:
    ngram: int
    hashes: np.ndarray           # uint64, sorted: every item's n-grams, each once per item
    items: np.ndarray            # int32, the item of each hash
    short_hashes: np.ndarray     # uint64, sorted: one hash per item shorter than ngram words
    short_items: np.ndarray      # int32
    short_lengths: np.ndarray    # int32, that item's word count
    item_ngrams: np.ndarray      # int32, distinct n-grams per item (1 for a short item)
    item_names: list[str]
    item_benchmarks: np.ndarray  # int16, index into benchmarks
    benchmarks: list[str]

    _ARRAYS = ("hashes", "items", "short_hashes", "short_items", "short_lengths", "item_ngrams", "item_benchmarks")

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta = json.dumps({"ngram": self.ngram, "names": self.item_names, "benchmarks": self.benchmarks}).encode()
        np.savez(buffer, meta=np.frombuffer(meta, dtype=np.uint8), **{k: getattr(self, k) for k in self._ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ContaminationIndex":
        arrays = np.load(io.BytesIO(data))
        meta = json.loads(arrays["meta"].tobytes())
        return cls(ngram=meta["ngram"], item_names=meta["names"], benchmarks=meta["benchmarks"],
                   **{k: arrays[k] for k in cls._ARRAYS})

    def summary(self) -> dict[str, Any]:
        return {"benchmarks": {b: int(np.sum(self.item_benchmarks == i)) for i, b in enumerate(self.benchmarks)},
                "ngrams": int(len(self.hashes) + len(self.short_hashes)),
                "bytes": int(sum(getattr(self, k).nbytes for k in self._ARRAYS))}


def _bitmap(hashes: np.ndarray) -> tuple[int, np.ndarray]:
    """A one-hash Bloom filter of the index: 2^bits bits, at least 32 per indexed n-gram,
    so at most 1 in 32 scanned n-grams that are not in the index needs the exact lookup."""
    bits = max(12, int(np.ceil(np.log2(max(len(hashes), 1) * 32))))
    bitmap = np.zeros(1 << (bits - 6), np.uint64)
    if len(hashes):
        slots = hashes >> np.uint64(64 - bits)  # sorted, as the hashes are
        words_of = slots >> np.uint64(6)
        starts = np.flatnonzero(np.r_[True, words_of[1:] != words_of[:-1]])
        bitmap[words_of[starts]] = np.bitwise_or.reduceat(np.uint64(1) << (slots & np.uint64(63)), starts)
    return bits, bitmap


def _distinct_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (first, second) pairs, sorted."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    keep = np.ones(len(first), bool)
    keep[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[keep], second[keep]


def build_index(config: ContaminationConfig, batch_items: int = 5_000) -> ContaminationIndex:
    """Reads every eval set and hashes its items' n-grams (each distinct n-gram once per item)."""
    n = config.ngram
    names: list[str] = []
    benchmark_of: list[int] = []
    hash_parts, item_parts = [], []
    short_hashes, short_items, short_lengths = [], [], []
    item_ngrams: list[np.ndarray] = []
    for b, eval_set in enumerate(config.benchmarks):
        fields = eval_set.text_fields()
        texts = []
        for number, row in enumerate(iter_eval_set(eval_set)):
            texts.append(item_text(row, fields))
            names.append(item_name(row, number))
        for start in range(0, len(texts), batch_items):
            first_item = len(benchmark_of)
            chunk = texts[start:start + batch_items]
            benchmark_of += [b] * len(chunk)
            units = words(pa.array(chunk, pa.string()))
            unit_values = unit_hashes(units)
            values, docs, _ = ngram_hashes(units, n, unit_values)
            docs, values = _distinct_pairs(docs.astype(np.int64), values)
            counts = np.bincount(docs, minlength=len(chunk)).astype(np.int32)
            hash_parts.append(values)
            item_parts.append((docs + first_item).astype(np.int32))
            offsets = units.offsets.to_numpy()
            lengths = np.diff(offsets)
            for d in np.flatnonzero((lengths > 0) & (lengths < n)):
                short_hashes.append(_whole_hash(unit_values[offsets[d]:offsets[d + 1]]))
                short_items.append(first_item + d)
                short_lengths.append(lengths[d])
                counts[d] = 1
            item_ngrams.append(counts)
        del texts
    hashes = np.concatenate(hash_parts) if hash_parts else np.zeros(0, np.uint64)
    del hash_parts
    items = np.concatenate(item_parts) if item_parts else np.zeros(0, np.int32)
    del item_parts
    order = np.argsort(hashes)  # introsort: no scratch copy of 8 bytes per n-gram
    hashes = hashes[order]
    items = items[order]
    del order
    short = np.array(short_hashes, np.uint64)
    short_order = np.argsort(short, kind="stable")
    return ContaminationIndex(
        ngram=n, hashes=hashes, items=items, short_hashes=short[short_order],
        short_items=np.array(short_items, np.int32)[short_order],
        short_lengths=np.array(short_lengths, np.int32)[short_order],
        item_ngrams=np.concatenate(item_ngrams) if item_ngrams else np.zeros(0, np.int32), item_names=names,
        item_benchmarks=np.array(benchmark_of, np.int16), benchmarks=[b.name for b in config.benchmarks])


def index_key(config: ContaminationConfig) -> str:
    """Names the index by what it is built from: n, the eval sets and their files' state."""
    import hashlib

    payload = {"format": 1, "ngram": config.ngram,
               "benchmarks": [b.model_dump(mode="json", exclude={"storage_options"}) for b in config.benchmarks],
               "files": [storage.file_info(b.uri, b.storage_options) for b in config.benchmarks]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_index(spec, progress=None) -> dict[str, Any] | None:
    """Builds the job's index once and writes it to the work directory (kept for re-runs
    with the same eval sets); returns its summary."""
    import time

    from pipeline.layout import OutputLayout

    config = spec.stages.contamination
    if not config.enabled:
        return None
    uri = OutputLayout(spec.output.uri).contamination_index(index_key(config))
    options = spec.output.storage_options
    if storage.exists(uri, options):
        return ContaminationIndex.from_bytes(storage.read_bytes(uri, options)).summary()
    started = time.perf_counter()
    index = build_index(config)
    storage.write_bytes(uri, index.to_bytes(), options)
    summary = index.summary()
    if progress is not None:
        items = sum(summary["benchmarks"].values())
        progress.log(f"contamination index: {items:,} eval items, {summary['ngrams']:,} n-grams, "
                     f"{summary['bytes'] / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s")
    return summary


def contamination_report(config: ContaminationConfig, index_summary: dict[str, Any],
                         annotate_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """``contamination.json``: per benchmark, the items found in the corpus, the documents
    that overlap them, what was done, and a few example document ids (never text)."""
    merged = merge_stats([s.get("stage_stats", {}).get("contamination", {}) for s in annotate_stats])
    benchmarks = {}
    for name, items in index_summary["benchmarks"].items():
        entry = merged.get(name, {"documents": 0, "items": set(), "examples": [], "annotated": 0, "excised": 0,
                                  "dropped": 0})
        benchmarks[name] = {
            "items": items, "items_found": len(entry["items"]), "documents": entry["documents"],
            "annotated": entry["annotated"], "excised": entry["excised"], "dropped": entry["dropped"],
            "items_found_ids": sorted(entry["items"])[:50], "example_documents": entry["examples"],
        }
    return {"action": config.action, "ngram": config.ngram, "min_matching_ngrams": config.min_matching_ngrams,
            "min_item_fraction": config.min_item_fraction, "index_ngrams": index_summary["ngrams"],
            "benchmarks": benchmarks}


def merge_stats(per_shard: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per benchmark over all shards: documents, distinct items found, outcomes, examples."""
    merged: dict[str, dict[str, Any]] = {}
    for stats in per_shard:
        for benchmark, entry in stats.items():
            into = merged.setdefault(benchmark, {"documents": 0, "items": set(), "examples": [],
                                                 "annotated": 0, "excised": 0, "dropped": 0})
            for key in ("documents", "annotated", "excised", "dropped"):
                into[key] += entry[key]
            into["items"].update(entry["items"])
            into["examples"] = (into["examples"] + entry["examples"])[:5]
    return merged


# --- the stage --------------------------------------------------------------------------

class ContaminationCheck(DocumentStage):
    """Adds ``contamination``: the eval items each document overlaps (benchmark, item,
    distinct matching n-grams, share of the item's n-grams), and applies the action."""

    name = "contamination"
    index_uri: str | None = None
    index_options: storage.StorageOptions = storage.StorageOptions()

    def bind_job(self, spec) -> None:
        """Load the job's index, which the runner builds once (``prepare_index``)."""
        from pipeline.layout import OutputLayout

        self.index_uri = OutputLayout(spec.output.uri).contamination_index(index_key(self.config))
        self.index_options = spec.output.storage_options

    def setup(self) -> None:
        if self.index_uri is None:  # a stage used on its own (tests, notebooks)
            self.index = build_index(self.config)
        else:
            self.index = ContaminationIndex.from_bytes(storage.read_bytes(self.index_uri, self.index_options))
        index = self.index
        self.bitmap_bits, self.bitmap = _bitmap(index.hashes)
        # (hashes, items) to look up the documents' n-grams of each length in
        self.tables = {index.ngram: (index.hashes, index.items)}
        for k in sorted(set(index.short_lengths.tolist())):
            chosen = index.short_lengths == k
            self.tables[int(k)] = (index.short_hashes[chosen], index.short_items[chosen])
        self.stats: dict[str, dict[str, Any]] = {}

    def take_stats(self) -> dict[str, Any]:
        """What this worker found since the last call, per benchmark (for the shard's marker)."""
        stats, self.stats = self.stats, {}
        return stats

    def _record(self, docs: pa.Table, overlaps: list[list[tuple[int, int, float]]], outcome: list[str]) -> None:
        ids = docs.column(cols.ID).to_pylist()
        index = self.index
        for row, found in enumerate(overlaps):
            for benchmark in sorted({index.benchmarks[index.item_benchmarks[item]] for item, _, _ in found}):
                entry = self.stats.setdefault(benchmark, {"documents": 0, "items": set(), "examples": [],
                                                          "annotated": 0, "excised": 0, "dropped": 0})
                entry["documents"] += 1
                entry[outcome[row]] += 1
                if len(entry["examples"]) < 5:
                    entry["examples"].append(ids[row])
            for item, _, _ in found:
                self.stats[index.benchmarks[index.item_benchmarks[item]]]["items"].add(index.item_names[item])

    def _lookup(self, values: np.ndarray, docs: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(document, item, hash) for every index entry of n-grams of ``length`` words that a
        scanned hash equals."""
        hashes, items = self.tables[length]
        if length == self.index.ngram:  # most scanned n-grams stop at the bitmap
            slots = values >> np.uint64(64 - self.bitmap_bits)
            maybe = ((self.bitmap[slots >> np.uint64(6)] >> (slots & np.uint64(63))) & np.uint64(1)).astype(bool)
            values, docs = values[maybe], docs[maybe]
        left = np.searchsorted(hashes, values, "left")
        hit = hashes[np.minimum(left, len(hashes) - 1)] == values if len(hashes) else np.zeros(len(values), bool)
        if not hit.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
        left, docs, values = left[hit], docs[hit], values[hit]
        right = np.searchsorted(hashes, values, "right")
        spans = right - left
        entry = np.repeat(left - np.r_[0, np.cumsum(spans)[:-1]], spans) + np.arange(spans.sum())
        return np.repeat(docs, spans), items[entry].astype(np.int64), np.repeat(values, spans)

    def matches(self, texts: pa.Array | pa.ChunkedArray) -> list[dict[int, int]]:
        """Per document, {item: distinct matching n-grams}."""
        units = words(texts)
        unit_values = unit_hashes(units)
        found = []
        for length in self.tables:
            values, docs, _ = ngram_hashes(units, length, unit_values)
            found.append(self._lookup(values, docs, length))
        per_doc: list[dict[int, int]] = [{} for _ in range(len(units))]
        docs = np.concatenate([f[0] for f in found])
        if len(docs):
            pair = (docs.astype(np.uint64) << np.uint64(32)) | np.concatenate([f[1] for f in found]).astype(np.uint64)
            pair, _ = _distinct_pairs(pair, np.concatenate([f[2] for f in found]))
            pairs, counts = np.unique(pair, return_counts=True)
            for key, count in zip(pairs.tolist(), counts.tolist()):
                per_doc[key >> 32][key & 0xFFFFFFFF] = count
        return per_doc

    def overlaps(self, per_doc: list[dict[int, int]]) -> list[list[tuple[int, int, float]]]:
        """Per document, the (item, n-grams, fraction) that pass the thresholds."""
        c, total = self.config, self.index.item_ngrams
        out = []
        for found in per_doc:
            kept = []
            for item, count in sorted(found.items()):
                fraction = count / max(int(total[item]), 1)
                if count >= c.min_matching_ngrams and fraction >= c.min_item_fraction:
                    kept.append((item, count, fraction))
            out.append(kept)
        return out

    def process(self, docs: pa.Table) -> StageOutput:
        column = docs.column(cols.TEXT)
        overlaps = self.overlaps(self.matches(column))
        index = self.index
        annotations = [[{"benchmark": index.benchmarks[index.item_benchmarks[item]], "item": index.item_names[item],
                         "ngrams": count, "fraction": round(fraction, 4)} for item, count, fraction in found]
                       for found in overlaps]
        table = docs.append_column(CONTAMINATION, pa.array(annotations, CONTAMINATION_TYPE))
        action = self.config.action
        if action == "annotate" or not any(overlaps):
            self._record(docs, overlaps, ["annotated"] * docs.num_rows)
            return StageOutput(table)
        reasons: list[str | None] = [None] * docs.num_rows
        if action == "drop":
            for row, found in enumerate(overlaps):
                if found:
                    reasons[row] = "contaminated"
            self._record(docs, overlaps, ["dropped"] * docs.num_rows)
            return StageOutput(table, pa.array(reasons, pa.string()))
        texts = column.to_pylist()
        excised: dict[int, str] = {}
        for row, found in enumerate(overlaps):
            if not found:
                continue
            pieces = self.excise(texts[row], {item for item, _, _ in found})
            if not pieces:
                reasons[row] = "contaminated_entirely"
            elif len(pieces) > self.config.max_pieces:
                reasons[row] = "contaminated_too_many_pieces"
            else:
                excised[row] = "\n".join(pieces)
        self._record(docs, overlaps, ["excised" if row in excised else "dropped" for row in range(docs.num_rows)])
        if excised:
            mask = pa.array([row in excised for row in range(docs.num_rows)])
            text_array = pc.replace_with_mask(column.combine_chunks(), mask,
                                              pa.array([excised[r] for r in sorted(excised)], column.type))
            table = table.set_column(table.schema.get_field_index(cols.TEXT), cols.TEXT, text_array)
            table = table.set_column(table.schema.get_field_index(cols.TEXT_BYTES), cols.TEXT_BYTES,
                                     pc.binary_length(text_array).cast(pa.int64()))
        return StageOutput(table, pa.array(reasons, pa.string()) if any(reasons) else None)

    def excise(self, text: str, items: set[int]) -> list[str]:
        """The pieces of ``text`` left after cutting every region that matches one of
        ``items``, widened by ``margin_chars`` on each side; pieces of only whitespace go."""
        import regex

        spans = [(m.start(), m.end(), m.group().lower())
                 for m in regex.finditer(r"[\p{L}\p{N}\p{M}]+", text)]
        if not spans:
            return [text] if text.strip() else []
        unit_values = np.array([unit_hash(w) for _, _, w in spans], np.uint64)
        units = pa.ListArray.from_arrays(pa.array([0, len(spans)], pa.int32()), pa.array([w for _, _, w in spans]))
        regions = []
        for k in self.tables:
            values, docs, starts = ngram_hashes(units, k, unit_values)
            hit_docs, hit_items, hit_values = self._lookup(values, docs, k)
            wanted = {v for v, item in zip(hit_values.tolist(), hit_items.tolist()) if item in items}
            for value, start in zip(values.tolist(), starts.tolist()):
                if value in wanted:
                    regions.append((spans[start][0], spans[start + k - 1][1]))
        margin = self.config.margin_chars
        cuts: list[list[int]] = []
        for a, b in sorted(regions):
            a, b = max(0, a - margin), min(len(text), b + margin)
            if cuts and a <= cuts[-1][1]:
                cuts[-1][1] = max(cuts[-1][1], b)
            else:
                cuts.append([a, b])
        pieces, last = [], 0
        for a, b in cuts:
            pieces.append(text[last:a])
            last = b
        pieces.append(text[last:])
        return [p for p in pieces if p.strip()]
