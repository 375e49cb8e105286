"""Near-duplicate removal: MinHash signatures (annotate), LSH banding, star edges per
bucket, distributed connected components, one survivor per component (dedup phase).

Normalization before shingling: NFKC, lowercase, every run of characters that are not
letters, digits or marks becomes a space, then split on whitespace (word shingles) or
whitespace folded to single spaces (character shingles).

Defaults: Jaccard threshold 0.8 with 128 permutations, as in the deduplication of
Gopher/RefinedWeb-style web corpora. 128 values keep a signature at 512 bytes while the
banded S-curve still separates 0.7 from 0.9 similarity sharply (see the run report).
Banding leans towards recall and every candidate edge is checked against the true
Jaccard similarity of the shingle sets, which measured precision 1.0 and recall 0.98 on
planted Wikipedia near duplicates (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch.lsh import _optimal_param
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import documents as cols
from pipeline.connected_components import DST, SRC, connected_components
from pipeline.minhash import Shingling, shingle_hashes, signatures
from pipeline.stages.base import REMOVAL_SCHEMA, DocumentStage, GlobalStage, StageOutput

MINHASH = "minhash"
SHINGLES = "shingle_hashes"
NODE = "node"
BAND_KEY = "band_key"
_NON_WORD = r"[^\p{L}\p{N}\p{M}\s]+"


class NearDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    """Jaccard similarity of shingle sets above which two documents are duplicates."""
    num_perm: int = Field(128, ge=8, le=1024)
    ngram: int = Field(5, ge=1, le=64)
    shingle_unit: Literal["word", "char"] = "word"
    seed: int = 1
    bands: int | None = Field(None, ge=1)
    """LSH bands; with ``rows`` overrides the optimum datasketch computes for the threshold."""
    rows: int | None = Field(None, ge=1)
    false_positive_weight: float = Field(0.1, ge=0.0, le=1.0)
    false_negative_weight: float = Field(0.9, ge=0.0, le=1.0)
    """Weights for datasketch's choice of bands and rows. The defaults favour recall (14 x 9
    at 0.8: P(candidate) 0.87 at 0.8, 0.98 at 0.85) and rely on ``verify`` for precision."""
    verify: Literal["none", "signature", "shingles"] = "shingles"
    """Check each candidate edge before it counts. ``signature``: the two signatures agree on
    at least ``threshold`` of their values (estimated Jaccard). ``shingles``: the true Jaccard
    similarity of the two shingle-hash sets reaches ``threshold``; annotate then also stores
    each document's shingle hashes. Both carry that column through the band shuffle."""

    @model_validator(mode="after")
    def _bands_and_rows(self) -> "NearDedupConfig":
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def banding(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        return _optimal_param(self.threshold, self.num_perm, self.false_positive_weight, self.false_negative_weight)

    def s_curve(self) -> dict[str, float]:
        """Probability that a pair with the given Jaccard similarity becomes a candidate."""
        bands, rows = self.banding()
        return {f"{s:.1f}": round(1 - (1 - s**rows) ** bands, 6) for s in (0.5, 0.7, 0.8, 0.9)}


def dedup_units(text: pa.Array, unit: str) -> pa.Array:
    normalized = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_normalize(text, "NFKC")), _NON_WORD, " ")
    if unit == "word":
        return pc.utf8_split_whitespace(normalized)
    return pa.array([list(" ".join(t.split())) for t in normalized.to_pylist()], pa.list_(pa.string()))


class MinHashSignatures(DocumentStage):
    """Adds ``minhash``: the document's signature, null when it has no shingles."""

    name = "near_dedup"

    def process(self, docs: pa.Table) -> StageOutput:
        c = self.config
        units = dedup_units(docs.column(cols.TEXT).combine_chunks(), c.shingle_unit)
        hashes, counts = shingle_hashes(units, Shingling(c.ngram, c.shingle_unit))
        values = signatures(hashes, counts, c.num_perm, c.seed)
        column = pa.FixedSizeListArray.from_arrays(
            pa.array(values.ravel(), pa.uint32()), c.num_perm, mask=pa.array(counts == 0)
        )
        docs = docs.append_column(MINHASH, column)
        if c.verify == "shingles":
            docs = docs.append_column(SHINGLES, _distinct_per_document(hashes, counts))
        return StageOutput(docs)


def _distinct_per_document(hashes: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    doc = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((hashes, doc))
    doc, hashes = doc[order], hashes[order]
    keep = np.r_[True, (doc[1:] != doc[:-1]) | (hashes[1:] != hashes[:-1])] if len(doc) else np.zeros(0, bool)
    offsets = np.r_[0, np.cumsum(np.bincount(doc[keep], minlength=len(counts)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(hashes[keep], pa.uint32()))


def node_ids(shard_ordinals: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One int64 per document that sorts like (shard_key, row)."""
    return (shard_ordinals.astype(np.int64) << 32) | rows.astype(np.int64)


class NearDuplicates(GlobalStage):
    name = "near_dedup"

    @property
    def key_columns(self) -> tuple[str, ...]:
        extra = (SHINGLES,) if self.config.verify == "shingles" else ()
        return (cols.SHARD, cols.ROW, cols.ID, MINHASH, *extra)

    def find_removals(self, keys, shard_keys: list[str]):
        bands, rows = self.config.banding()
        verify = self.config.verify
        carried = {"none": None, "signature": MINHASH, "shingles": SHINGLES}[verify]
        band_rows = keys.map_batches(
            _band_keys, fn_kwargs={"shard_keys": shard_keys, "bands": bands, "rows": rows, "carried": carried},
            batch_format="pyarrow",
        )
        edges = band_rows.sort(BAND_KEY).map_batches(
            _star_edges, fn_kwargs={"threshold": self.config.threshold, "verify": verify},
            batch_size=None, batch_format="pyarrow",
        )
        components = connected_components(edges)
        # Look up each survivor's id with a sort-merge: requests and every document's
        # (node, id) sorted together, so each survivor's id lands in the block asking for it.
        requests = components.map_batches(_id_requests, batch_format="pyarrow")
        ids = keys.map_batches(_id_rows, fn_kwargs={"shard_keys": shard_keys}, batch_format="pyarrow")
        return requests.union(ids).sort(LOOKUP_KEY).map_batches(
            _removals, fn_kwargs={"shard_keys": shard_keys}, batch_size=None, batch_format="pyarrow"
        )


def _ordinals(shard_column: pa.ChunkedArray | pa.Array, shard_keys: list[str]) -> np.ndarray:
    return pc.index_in(shard_column, value_set=pa.array(shard_keys)).to_numpy(zero_copy_only=False)


def _band_keys(block: pa.Table, shard_keys: list[str], bands: int, rows: int, carried: str | None) -> pa.Table:
    """(band_key, node[, carried column]) for every band of every document with a signature."""
    signature = block.column(MINHASH).combine_chunks()
    valid = pc.is_valid(signature).to_numpy(zero_copy_only=False)
    nodes = node_ids(_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy())[valid]
    width = signature.type.list_size
    values = signature.filter(pa.array(valid)).flatten().to_numpy().reshape(-1, width).astype(np.uint64)
    keys = np.empty((len(nodes), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            part = values[:, band * rows : (band + 1) * rows]
            mixed = np.full(len(nodes), np.uint64(band) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for column in range(rows):
                mixed = (mixed ^ part[:, column]) * np.uint64(0x9E3779B97F4A7C15)
            keys[:, band] = mixed ^ (mixed >> np.uint64(29))
    table = pa.table({BAND_KEY: pa.array(keys.ravel().view(np.int64)), NODE: pa.array(np.repeat(nodes, bands))})
    if carried:
        rows_of_valid = np.repeat(np.flatnonzero(valid), bands)
        table = table.append_column(carried, block.column(carried).take(pa.array(rows_of_valid)))
    return table


def _star_edges(block: pa.Table, threshold: float, verify: str) -> pa.Table:
    """Each bucket becomes a star on its smallest node: n - 1 edges, never n^2. With
    verification, a spoke is kept only if it is similar enough to the centre."""
    if block.num_rows == 0:
        return pa.table({SRC: pa.array([], pa.int64()), DST: pa.array([], pa.int64())})
    keys = block.column(BAND_KEY).to_numpy()
    nodes = block.column(NODE).to_numpy()
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    starts = np.r_[True, keys[1:] != keys[:-1]]
    center_row = np.maximum.accumulate(np.where(starts, np.arange(len(nodes)), 0))
    center = nodes[center_row]
    spoke = (~starts) & (nodes != center)
    spokes = np.flatnonzero(spoke)
    if verify == "signature" and len(spokes):
        signature = block.column(MINHASH).combine_chunks()
        values = signature.flatten().to_numpy().reshape(-1, signature.type.list_size)[order]
        agreement = np.mean(values[spokes] == values[center_row[spokes]], axis=1)
        spoke[spokes[agreement < threshold]] = False
    elif verify == "shingles" and len(spokes):
        sets = block.column(SHINGLES).combine_chunks()
        offsets, flat = sets.offsets.to_numpy(), sets.flatten().to_numpy()

        def members(row: int) -> np.ndarray:
            i = order[row]
            return flat[offsets[i] : offsets[i + 1]]

        for row in spokes:
            a, b = members(row), members(center_row[row])
            shared = len(np.intersect1d(a, b, assume_unique=True))
            if shared < threshold * (len(a) + len(b) - shared):
                spoke[row] = False
    return pa.table({SRC: pa.array(nodes[spoke]), DST: pa.array(center[spoke])})


LOOKUP_KEY = "lookup_key"
_IS_ID_ROW = "is_id_row"
_LOOKUP_SCHEMA = pa.schema([(LOOKUP_KEY, pa.int64()), (NODE, pa.int64()), (cols.ID, pa.string()), (_IS_ID_ROW, pa.bool_())])


def _id_requests(block: pa.Table) -> pa.Table:
    n = block.num_rows
    return pa.table([block.column(DST), block.column(SRC), pa.nulls(n, pa.string()), pa.array([False] * n)],
                    schema=_LOOKUP_SCHEMA)


def _id_rows(block: pa.Table, shard_keys: list[str]) -> pa.Table:
    nodes = pa.array(node_ids(_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy()))
    return pa.table([nodes, nodes, block.column(cols.ID), pa.array([True] * block.num_rows)], schema=_LOOKUP_SCHEMA)


def _removals(block: pa.Table, shard_keys: list[str]) -> pa.Table:
    """Removal rows for every request, with the id of the survivor it asked about."""
    keys = block.column(LOOKUP_KEY).to_numpy()
    is_id_row = block.column(_IS_ID_ROW).to_numpy(zero_copy_only=False)
    order = np.lexsort((~is_id_row, keys))  # within a key, the id row comes first
    keys, is_id_row = keys[order], is_id_row[order]
    starts = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    first_of_group = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    request = ~is_id_row
    nodes = block.column(NODE).to_numpy()[order][request]
    ids = block.column(cols.ID).take(pa.array(order)).take(pa.array(first_of_group[request]))
    names = np.array(shard_keys, dtype=object)
    n = len(nodes)
    return pa.table({
        cols.SHARD: pa.array(names[nodes >> 32], pa.string()),
        cols.ROW: pa.array(nodes & 0xFFFFFFFF, pa.int64()),
        cols.ID: pa.nulls(n, pa.string()),
        cols.REJECT_STAGE: pa.array(["near_dedup"] * n, pa.string()),
        cols.REJECT_REASON: pa.array(["near_duplicate"] * n, pa.string()),
        cols.DUPLICATE_OF: ids,
    }, schema=REMOVAL_SCHEMA)
