"""The word lists stage: ``word_list_counts`` per document, and rejects by each list's ratio
rule (``pipeline.stages.word_lists.matcher`` says what a match is).

A document is rejected by a list when it has at least ``min_matches`` matches and the words
in them, over the words in the document, exceed ``max_ratio``; by the first such list in
the spec's order when several would reject it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core.columns import LANG
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.word_lists.config import WordListsConfig, read_list
from pipeline.stages.word_lists.matcher import ListMatcher, WordList, count_words, prepare_tables

WORD_LIST_COUNTS = "word_list_counts"
COUNTS_TYPE = pa.map_(pa.string(), pa.int32())


def reject_reason(name: str) -> str:
    return f"word_list_{name}"


def load_lists(config: WordListsConfig) -> list[WordList]:
    return [
        WordList(
            word_list.name, {label: read_list(uri, config.storage_options) for label, uri in word_list.files.items()}
        )
        for word_list in config.lists
    ]


class WordListsFilter(DocumentStage):
    name = "word_lists"

    def setup(self) -> None:
        self.matcher = ListMatcher(load_lists(self.config))
        # only a ratio above 0 counts the words of documents
        prepare_tables(word_counts=any(word_list.max_ratio for word_list in self.config.lists))

    def process(self, docs: pa.Table) -> StageOutput:
        text = docs.column(cols.TEXT)
        langs = docs.column(LANG) if LANG in docs.column_names else None
        matches, words = self.matcher.count(text, langs)
        table = docs.append_column(WORD_LIST_COUNTS, counts_column(matches, self.matcher.names))
        return StageOutput(table, self.reject_reasons(text, matches, words))

    def reject_reasons(self, text: pa.ChunkedArray, matches: np.ndarray, words: np.ndarray) -> pa.Array | None:
        """``word_list_<name>`` of the first list whose rule rejects the document, or null.
        ``matches`` and ``words``: per document and list, as ``ListMatcher.count`` gives them."""
        rejected_by = np.full(len(matches), -1)
        doc_words = np.full(len(matches), -1, np.int64)  # counted only where a ratio is needed
        for number, word_list in enumerate(self.config.lists):
            if word_list.max_ratio is None:
                continue
            rows = np.flatnonzero((matches[:, number] >= word_list.min_matches) & (rejected_by < 0))
            if word_list.max_ratio > 0 and rows.size:
                uncounted = rows[doc_words[rows] < 0]
                if uncounted.size == len(doc_words):
                    doc_words = count_words(text)
                elif uncounted.size:
                    doc_words[uncounted] = count_words(text.take(uncounted))
                ratio = np.divide(
                    words[rows, number], doc_words[rows], where=doc_words[rows] > 0, out=np.zeros(rows.size)
                )
                rows = rows[ratio > word_list.max_ratio]
            rejected_by[rows] = number
        if (rejected_by < 0).all():
            return None
        reasons = np.array([reject_reason(name) for name in self.matcher.names], object)
        return pa.array(reasons[np.maximum(rejected_by, 0)], pa.string(), mask=rejected_by < 0)

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        """Kept documents with at least one match, per list."""
        if not kept.num_rows:
            return {}
        keys = pa.chunked_array([_keys(chunk) for chunk in kept.column(WORD_LIST_COUNTS).chunks], pa.string())
        return {item["values"]: item["counts"] for item in pc.value_counts(keys).to_pylist()}


def _keys(maps: pa.MapArray) -> pa.Array:
    """The keys of every map in ``maps`` (``MapArray.keys`` ignores a slice's bounds)."""
    first, last = maps.offsets[0].as_py(), maps.offsets[-1].as_py()
    return maps.keys.slice(first, last - first)


def counts_column(matches: np.ndarray, names: list[str]) -> pa.Array:
    """``word_list_counts``: per document, the lists with matches and how many."""
    found = matches > 0
    offsets = np.zeros(len(matches) + 1, np.int32)
    np.cumsum(found.sum(axis=1), out=offsets[1:])
    rows, lists = np.nonzero(found)
    keys = pa.array(np.array(names, object)[lists], pa.string())
    values = pa.array(matches[rows, lists].astype(np.int32), pa.int32())
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, values, type=COUNTS_TYPE)
