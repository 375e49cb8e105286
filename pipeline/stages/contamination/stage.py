"""Benchmark contamination: find evaluation items inside training documents by word n-gram
overlap, and annotate, drop or excise them.

Text on both sides is normalized the same way: lower case, and words are the runs of
letters, digits and combining marks (everything else, punctuation included, separates
words). So case, whitespace and punctuation changes do not hide an item. Every eval item
contributes its word n-grams (default 13, GPT-3's choice), each hashed to 64 bits as a
polynomial over per-word blake2b hashes (``pipeline.core.ngrams``).

Only informative n-grams count. An n-gram of mostly numbers and single letters (``1 2 3 …
13``, a table row, ``for i in range(n)``) and an n-gram found in more than
``max_items_per_ngram`` items (a benchmark's template) is in clean text as often as in
eval items: it is left out of the index, so it cannot flag a document by itself. An item
with no counting n-gram is matched whole: it keeps all its n-grams and overlaps a document
that holds every one of them. An item shorter than n words contributes one hash of all its
words, matched against the documents' runs of the same length. So short and generic items
are still found verbatim and with surface changes, and long items in fragments.

The index is sorted arrays of (n-gram hash, item) built once per job from the eval
files (``build_index``) and written to the work directory; every worker loads it and puts
a one-hash bitmap (32 bits per n-gram) in front of it, which most scanned n-grams stop at.
Lookups are exact on the 64-bit hash, so the only false matches are hash collisions: with
I indexed n-grams and Q scanned ones, about I·Q/2^64 (about one half for 10^7 indexed
n-grams against 10^12 scanned).

A document overlaps an item when at least ``min_matching_ngrams`` distinct counting n-grams
of the item occur in it and they cover at least ``min_item_fraction`` of them, or when it
holds an item matched whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.bloom import bitmap_of, in_bitmap
from pipeline.core.ngrams import ngram_hashes, unit_hash, unit_hashes
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.contamination.index import (
    ContaminationIndex,
    build_index,
    distinct_pairs,
    index_key,
    words,
)

if TYPE_CHECKING:
    from pipeline.config import JobSpec

CONTAMINATION = "contamination"
CONTAMINATION_TYPE = pa.list_(
    pa.struct([("benchmark", pa.string()), ("item", pa.string()), ("ngrams", pa.int32()), ("fraction", pa.float32())])
)


class ContaminationCheck(DocumentStage):
    """Adds ``contamination``: the eval items each document overlaps (benchmark, item,
    distinct matching n-grams, share of the item's n-grams), and applies the action."""

    example_text = False  # the documents hold eval text: examples name the items only
    example_hiding_columns = (CONTAMINATION,)

    def hides_example_text(self, rejected: pa.Table) -> pa.Array | None:
        if CONTAMINATION not in rejected.column_names:
            return None
        return pc.fill_null(pc.greater(pc.list_value_length(rejected.column(CONTAMINATION)), 0), False)

    name = "contamination"
    index_uri: str | None = None
    index_options: storage.StorageOptions = storage.StorageOptions()

    def bind_job(self, spec: JobSpec) -> None:
        """Load the job's index, which the runner builds once (``prepare_index``)."""
        from pipeline.core.layout import OutputLayout

        self.index_uri = OutputLayout(spec.output.uri).stage_work(
            "contamination", f"index-{index_key(self.config)}.npz"
        )
        self.index_options = spec.output.storage_options

    def setup(self) -> None:
        if self.index_uri is None:  # a stage used on its own (tests, notebooks)
            self.index = build_index(self.config)
        else:
            self.index = ContaminationIndex.from_bytes(storage.read_bytes(self.index_uri, self.index_options))
        index = self.index
        self.bitmap = bitmap_of(index.hashes, bits_per_hash=32)
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
                entry = self.stats.setdefault(
                    benchmark,
                    {"documents": 0, "items": set(), "examples": [], "annotated": 0, "excised": 0, "dropped": 0},
                )
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
            maybe = in_bitmap(self.bitmap, values)
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
        """Per document, {item: distinct matching n-grams}. A text of several fields (a
        conversation) is matched field by field: no n-gram spans two messages."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        num_docs, parent = len(texts), None
        if num_docs and pc.any(pc.match_substring(texts, cols.SEGMENT_BREAK)).as_py():
            fields = pc.split_pattern(texts, cols.SEGMENT_BREAK)
            parent = pc.list_parent_indices(fields).to_numpy()
            texts = fields.flatten()
        units = words(texts)
        unit_values = unit_hashes(units)
        found = []
        for length in self.tables:
            values, docs, _ = ngram_hashes(units, length, unit_values)
            found.append(self._lookup(values, docs, length))
        per_doc: list[dict[int, int]] = [{} for _ in range(num_docs)]
        docs = np.concatenate([f[0] for f in found])
        if parent is not None:
            docs = parent[docs]
        if len(docs):
            pair = (docs.astype(np.uint64) << np.uint64(32)) | np.concatenate([f[1] for f in found]).astype(np.uint64)
            pair, _ = distinct_pairs(pair, np.concatenate([f[2] for f in found]))
            pairs, counts = np.unique(pair, return_counts=True)
            for key, count in zip(pairs.tolist(), counts.tolist()):
                per_doc[key >> 32][key & 0xFFFFFFFF] = count
        return per_doc

    def overlaps(self, per_doc: list[dict[int, int]]) -> list[list[tuple[int, int, float]]]:
        """Per document, the (item, n-grams, fraction) that pass the thresholds. An item
        matched whole overlaps when all of its n-grams are found, whatever the thresholds."""
        c, total, whole = self.config, self.index.item_ngrams, self.index.item_whole
        out = []
        for found in per_doc:
            kept = []
            for item, count in sorted(found.items()):
                fraction = count / max(int(total[item]), 1)
                if whole[item]:
                    if count >= total[item]:
                        kept.append((item, count, 1.0))
                elif count >= c.min_matching_ngrams and fraction >= c.min_item_fraction:
                    kept.append((item, count, fraction))
            out.append(kept)
        return out

    def process(self, docs: pa.Table) -> StageOutput:
        column = docs.column(cols.TEXT)
        overlaps = self.overlaps(self.matches(column))
        index = self.index
        annotations = [
            [
                {
                    "benchmark": index.benchmarks[index.item_benchmarks[item]],
                    "item": index.item_names[item],
                    "ngrams": count,
                    "fraction": round(fraction, 4),
                }
                for item, count, fraction in found
            ]
            for found in overlaps
        ]
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
        table = cols.with_texts_replaced(table, excised)
        return StageOutput(table, pa.array(reasons, pa.string()) if any(reasons) else None)

    def excise(self, text: str, items: set[int]) -> list[str]:
        """The pieces of ``text`` left after cutting every region that matches one of
        ``items``, widened by ``margin_chars`` on each side; pieces of only whitespace go."""
        import regex

        spans = [(m.start(), m.end(), m.group().lower()) for m in regex.finditer(r"[\p{L}\p{N}\p{M}]+", text)]
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
