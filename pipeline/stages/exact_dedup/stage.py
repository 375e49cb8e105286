"""Exact deduplication: a 64-bit hash of normalized text per document (annotate), then a
global hash shuffle that keeps one survivor per hash (dedup phase).

The survivor of a group is the document that sorts first by (shard_key, row), so the
choice does not depend on how Ray schedules the work.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE
from pipeline.core.blocks import sorted_by
from pipeline.stages.base import REMOVAL_SCHEMA, DocumentStage, GlobalStage, StageOutput, removal_table
from pipeline.stages.exact_dedup.config import ExactDedupConfig
from pipeline.stages.exact_dedup.normalize import normalize_for_dedup

EXACT_HASH = "exact_hash"


def text_hash(text: str, config: ExactDedupConfig) -> int:
    normalized = normalize_for_dedup(
        text,
        unicode_nfkc=config.unicode_nfkc,
        lowercase=config.lowercase,
        collapse_whitespace=config.collapse_whitespace,
        strip_punctuation=config.strip_punctuation,
    )
    digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class ExactDedupKeys(DocumentStage):
    """Adds ``exact_hash``: blake2b-64 of the normalized text."""

    name = "exact_dedup"
    internal_columns = (EXACT_HASH,)

    def process(self, docs: pa.Table) -> StageOutput:
        hashes = [text_hash(t, self.config) for t in cols.dedup_text(docs).to_pylist()]
        return StageOutput(docs.append_column(EXACT_HASH, pa.array(hashes, pa.int64())))


class ExactDuplicates(GlobalStage):
    name = "exact_dedup"
    index_columns = (EXACT_HASH,)

    def find_removals(self, shards):
        # A sort range-partitions by hash, so every row of a hash value lands in one block
        # (what Ray's own map_groups relies on); each block is then deduplicated vectorized.
        # Sorting by (hash, node) instead could split a hash's rows between two blocks.
        keys = shards.read([cols.SHARD, cols.ROW, cols.ID, EXACT_HASH])
        return sorted_by(keys, EXACT_HASH).map_batches(duplicates_in_block, batch_size=None, batch_format="pyarrow")


def duplicates_in_block(block: pa.Table) -> pa.Table:
    """Every row whose hash equals a row with a smaller node's, with the survivor's id."""
    if block.num_rows == 0:
        return REMOVAL_SCHEMA.empty_table()
    block = block.sort_by([(EXACT_HASH, "ascending"), (NODE, "ascending")])
    hashes = block.column(EXACT_HASH).to_numpy()
    positions = np.arange(len(hashes))
    starts_group = np.ones(len(hashes), dtype=bool)
    starts_group[1:] = hashes[1:] != hashes[:-1]
    survivor_position = np.maximum.accumulate(np.where(starts_group, positions, 0))
    is_duplicate = ~starts_group
    duplicates = block.filter(pa.array(is_duplicate))
    survivors = pa.array(survivor_position[is_duplicate])
    return removal_table(
        duplicates.column(cols.SHARD),
        duplicates.column(cols.ROW),
        duplicates.column(cols.ID),
        "exact_dedup",
        "exact_duplicate",
        pc.take(block.column(cols.ID), survivors),
        (pc.take(block.column(cols.SHARD), survivors), pc.take(block.column(cols.ROW), survivors)),
    )
