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
from pipeline.annotated import NODE, AnnotatedShards, shards_and_rows
from pipeline.blocks import right_sized
from pipeline.connected_components import DST, EDGE_SCHEMA, SRC, connected_components, distinct_edges
from pipeline.minhash import Shingling, shingle_hashes, signatures
from pipeline.stages.base import REMOVAL_SCHEMA, DocumentStage, GlobalStage, StageOutput
from pipeline.stages.perplexity import PERPLEXITY

MINHASH = "minhash"
LSH_BANDS = "lsh_bands"
SHINGLES = "shingle_hashes"
UNIT_COUNT = "dedup_units"
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
    at least ``threshold`` of their values (estimated Jaccard); annotate then stores each
    signature. ``shingles``: the true Jaccard similarity of the two shingle-hash sets reaches
    ``threshold``; annotate then stores each document's shingle hashes. Either column is
    read only for the documents in a candidate edge."""
    survivor: Literal["first", "longest", "lowest_perplexity"] = "first"
    """Which document of a duplicate cluster is kept: ``first`` by (shard, row), the
    ``longest`` in normalized words, or the one with the ``lowest_perplexity`` (needs the
    perplexity stage; documents without a perplexity rank last). Ties go to the first."""

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
    """Per document, its words (``word``) or characters (``char``) after normalization; a
    document of only punctuation and spaces has none."""
    normalized = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_normalize(text, "NFKC")), _NON_WORD, " ")
    if unit == "char":
        return pa.array([list(" ".join(t.split())) for t in normalized.to_pylist()], pa.list_(pa.string()))
    words = pc.utf8_split_whitespace(normalized)
    flat = words.flatten()
    real = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(words).to_numpy()[real]
    offsets = np.r_[0, np.cumsum(np.bincount(parents, minlength=len(words)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(real)))


class MinHashSignatures(DocumentStage):
    """Adds ``lsh_bands``: the document's LSH band keys, null when it has no shingles, and
    what verification needs: ``minhash`` (the signature) or ``shingle_hashes``."""

    name = "near_dedup"

    def process(self, docs: pa.Table) -> StageOutput:
        c = self.config
        units = dedup_units(docs.column(cols.TEXT).combine_chunks(), c.shingle_unit)
        hashes, counts = shingle_hashes(units, Shingling(c.ngram, c.shingle_unit))
        values = signatures(hashes, counts, c.num_perm, c.seed)
        no_shingles = pa.array(counts == 0)
        bands, rows = c.banding()
        keys = band_keys(values, bands, rows)
        docs = docs.append_column(LSH_BANDS, pa.ListArray.from_arrays(
            pa.array(np.arange(len(counts) + 1, dtype=np.int32) * bands), pa.array(keys.ravel()), mask=no_shingles))
        docs = docs.append_column(UNIT_COUNT, pa.array(pc.list_value_length(units).fill_null(0), pa.int32()))
        if c.verify == "signature":
            docs = docs.append_column(MINHASH, pa.FixedSizeListArray.from_arrays(
                pa.array(values.ravel(), pa.uint32()), c.num_perm, mask=no_shingles))
        if c.verify == "shingles":
            docs = docs.append_column(SHINGLES, _distinct_per_document(hashes, counts))
        return StageOutput(docs)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) int64: a 64-bit mix of each band's ``rows`` signature values and
    the band's number, so equal keys mean an equal band in the same position."""
    values = signatures.astype(np.uint64)
    keys = np.empty((len(values), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            mixed = np.full(len(values), np.uint64(band) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for column in range(band * rows, (band + 1) * rows):
                mixed = (mixed ^ values[:, column]) * np.uint64(0x9E3779B97F4A7C15)
            keys[:, band] = mixed ^ (mixed >> np.uint64(29))
    return keys.view(np.int64)


def _distinct_per_document(hashes: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    doc = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((hashes, doc))
    doc, hashes = doc[order], hashes[order]
    keep = np.r_[True, (doc[1:] != doc[:-1]) | (hashes[1:] != hashes[:-1])] if len(doc) else np.zeros(0, bool)
    offsets = np.r_[0, np.cumsum(np.bincount(doc[keep], minlength=len(counts)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(hashes[keep], pa.uint32()))


class NearDuplicates(GlobalStage):
    name = "near_dedup"

    @property
    def index_columns(self) -> tuple[str, ...]:
        verified = {"none": (), "signature": (MINHASH,), "shingles": (SHINGLES,)}[self.config.verify]
        ranked = (PERPLEXITY,) if self.config.survivor == "lowest_perplexity" else ()
        return (LSH_BANDS, UNIT_COUNT, *verified, *ranked)

    def find_removals(self, shards: AnnotatedShards):
        band_rows = shards.read([LSH_BANDS]).map_batches(_band_rows, batch_format="pyarrow")
        edges = band_rows.sort(BAND_KEY).map_batches(_star_edges, batch_size=None, batch_format="pyarrow")
        # The same pair meets in several bands; count it once before anything is read for it.
        edges = right_sized(edges.sort([SRC, DST]).map_batches(distinct_edges, batch_size=None, batch_format="pyarrow"))
        if self.config.verify != "none":
            edges = right_sized(self._verified(edges, shards))
        components = right_sized(connected_components(edges))
        if self.config.survivor != "first":
            components = _ranked_survivors(components, shards, self.config.survivor)
        survivors = shards.attach(components, DST, EDGE_SCHEMA, pa.schema([(cols.ID, pa.string())]))
        return survivors.map_batches(_removals, fn_kwargs={"shard_keys": shards.shard_keys}, batch_format="pyarrow")

    def _verified(self, edges, shards: AnnotatedShards):
        """Each candidate edge gets both ends' signature or shingle set, then is kept only if
        similar enough."""
        signature = self.config.verify == "signature"
        column = pa.schema([(MINHASH, pa.list_(pa.uint32(), self.config.num_perm))] if signature
                           else [(SHINGLES, pa.list_(pa.uint32()))])
        with_src = shards.attach(edges, SRC, EDGE_SCHEMA, column, ["src_set"])
        src_schema = pa.schema([*EDGE_SCHEMA, ("src_set", column[0].type)])
        with_both = shards.attach(with_src, DST, src_schema, column, ["dst_set"])
        return with_both.map_batches(
            _similar_enough, fn_kwargs={"threshold": self.config.threshold, "signature": signature},
            batch_format="pyarrow",
        )


# survivor -> (column ranked, best first when sorted ascending by this key)
_SURVIVOR_RANKING = {
    "longest": (UNIT_COUNT, pa.int32(), lambda values: -values.astype(np.float64)),
    "lowest_perplexity": (PERPLEXITY, pa.float64(), lambda values: np.nan_to_num(values, nan=np.inf)),
}


def _ranked_survivors(components, shards: AnnotatedShards, survivor: str):
    """Re-point every member of a component at its best document by ``survivor``."""
    column, value_type, _ = _SURVIVOR_RANKING[survivor]
    members = components.map_batches(_members_with_root, batch_format="pyarrow")
    with_value = shards.attach(members, SRC, EDGE_SCHEMA, pa.schema([(column, value_type)]))
    return with_value.sort(DST).map_batches(
        _point_at_best, fn_kwargs={"first_new": shards.first_new_node, "survivor": survivor},
        batch_size=None, batch_format="pyarrow")


def _members_with_root(block: pa.Table) -> pa.Table:
    roots = np.unique(block.column(DST).to_numpy())
    return pa.table({SRC: pa.array(np.r_[block.column(SRC).to_numpy(), roots]),
                     DST: pa.array(np.r_[block.column(DST).to_numpy(), roots])}, schema=EDGE_SCHEMA)


def _point_at_best(block: pa.Table, first_new: int, survivor: str) -> pa.Table:
    if block.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    column, _, rank_key = _SURVIVOR_RANKING[survivor]
    node, component = block.column(SRC).to_numpy(), block.column(DST).to_numpy()
    key = rank_key(block.column(column).to_numpy(zero_copy_only=False))
    # Per component: a document kept by an earlier run, then the best by key, then the first.
    order = np.lexsort((node, key, node >= first_new, component))
    node, component = node[order], component[order]
    first_of_component = np.r_[True, component[1:] != component[:-1]]
    best = node[np.maximum.accumulate(np.where(first_of_component, np.arange(len(node)), 0))]
    keep = np.r_[True, (node[1:] != node[:-1]) | (component[1:] != component[:-1])] & (node != best)
    return pa.table({SRC: pa.array(node[keep]), DST: pa.array(best[keep])}, schema=EDGE_SCHEMA)


def _similar_enough(block: pa.Table, threshold: float, signature: bool) -> pa.Table:
    src, dst = block.column(SRC).to_numpy(), block.column(DST).to_numpy()
    a, b = block.column("src_set").combine_chunks(), block.column("dst_set").combine_chunks()
    if len(src) == 0:
        return EDGE_SCHEMA.empty_table()
    if signature:
        width = a.type.list_size
        agreement = np.mean(a.flatten().to_numpy().reshape(-1, width) == b.flatten().to_numpy().reshape(-1, width), axis=1)
        keep = agreement >= threshold
    else:
        a_offsets, a_flat = a.offsets.to_numpy(), a.flatten().to_numpy()
        b_offsets, b_flat = b.offsets.to_numpy(), b.flatten().to_numpy()
        keep = np.zeros(len(src), dtype=bool)
        for i in range(len(src)):
            x, y = a_flat[a_offsets[i] : a_offsets[i + 1]], b_flat[b_offsets[i] : b_offsets[i + 1]]
            shared = len(np.intersect1d(x, y, assume_unique=True))
            keep[i] = shared >= threshold * (len(x) + len(y) - shared)
    return pa.table({SRC: pa.array(src[keep]), DST: pa.array(dst[keep])}, schema=EDGE_SCHEMA)


def _band_rows(block: pa.Table) -> pa.Table:
    """(band_key, node) for every band of every document with shingles."""
    keys = block.column(LSH_BANDS).combine_chunks()
    per_document = pc.list_value_length(keys).fill_null(0).to_numpy(zero_copy_only=False)
    return pa.table({BAND_KEY: keys.flatten(), NODE: pa.array(np.repeat(block.column(NODE).to_numpy(), per_document))})


def _star_edges(block: pa.Table) -> pa.Table:
    """Each bucket becomes a star on its smallest node: n - 1 edges, never n^2."""
    if block.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    keys = block.column(BAND_KEY).to_numpy()
    nodes = block.column(NODE).to_numpy()
    order = np.lexsort((nodes, keys))
    keys, nodes = keys[order], nodes[order]
    starts = np.r_[True, keys[1:] != keys[:-1]]
    center = nodes[np.maximum.accumulate(np.where(starts, np.arange(len(nodes)), 0))]
    spoke = (~starts) & (nodes != center)
    return pa.table({SRC: pa.array(nodes[spoke]), DST: pa.array(center[spoke])}, schema=EDGE_SCHEMA)


def _removals(block: pa.Table, shard_keys: list[str]) -> pa.Table:
    shards, rows = shards_and_rows(block.column(SRC).to_numpy(), shard_keys)
    n = block.num_rows
    return pa.table({
        cols.SHARD: shards, cols.ROW: rows, cols.ID: pa.nulls(n, pa.string()),
        cols.REJECT_STAGE: pa.array(["near_dedup"] * n, pa.string()),
        cols.REJECT_REASON: pa.array(["near_duplicate"] * n, pa.string()),
        cols.DUPLICATE_OF: block.column(cols.ID),
    }, schema=REMOVAL_SCHEMA)
