"""The global half of near dedup: LSH buckets → star edges → verified edges → connected
components → one survivor per component, and per removed member the verified edge that
links it in (``links``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, AnnotatedShards, shards_and_rows
from pipeline.core.blocks import right_sized, sorted_by
from pipeline.core.columns import PERPLEXITY
from pipeline.stages.base import GlobalStage, Matches, removal_table
from pipeline.stages.near_dedup import links as links_module
from pipeline.stages.near_dedup.components import DST, EDGE_SCHEMA, SRC, connected_components, distinct_edges
from pipeline.stages.near_dedup.links import (
    COMPONENT,
    LINK_SCHEMA,
    MATCHED,
    RANK,
    ROW_SCHEMA,
    SCORED_EDGE_SCHEMA,
    SIMILARITY,
)
from pipeline.stages.near_dedup.stage import LSH_BANDS, MINHASH, SHINGLES, UNIT_COUNT

BAND_KEY = "band_key"


class NearDuplicates(GlobalStage):
    name = "near_dedup"

    @property
    def index_columns(self) -> tuple[str, ...]:
        verified = {"none": (), "signature": (MINHASH,), "shingles": (SHINGLES,)}[self.config.verify]
        ranked = (PERPLEXITY,) if self.config.survivor == "lowest_perplexity" else ()
        return (LSH_BANDS, UNIT_COUNT, *verified, *ranked)

    def find_removals(self, shards: AnnotatedShards):
        bands, _ = self.config.banding()
        stars = [
            right_sized(
                sorted_by(
                    shards.read([LSH_BANDS]).map_batches(
                        _band_rows, fn_kwargs={"first": first, "last": last}, batch_format="pyarrow"
                    ),
                    BAND_KEY,
                ).map_batches(_star_edges, batch_size=None, batch_format="pyarrow")
            )
            for first, last in band_groups(shards.num_documents(), bands)
        ]
        edges = stars[0].union(*stars[1:]) if len(stars) > 1 else stars[0]
        # The same pair meets in several bands; count it once before anything is read for it.
        edges = right_sized(
            sorted_by(edges, [SRC, DST]).map_batches(distinct_edges, batch_size=None, batch_format="pyarrow")
        )
        if self.config.verify != "none":
            edges = right_sized(self._verified(edges, shards))
        else:
            edges = edges.map_batches(_unscored, batch_format="pyarrow")
        links = self._links(edges, shards)
        if not self.config.transitive:
            links = self._direct_to_survivor(links, shards)
        id_schema = pa.schema([(cols.ID, pa.string())])
        links = shards.attach(links, DST, LINK_SCHEMA, id_schema)
        links = shards.attach(links, MATCHED, pa.schema([*LINK_SCHEMA, *id_schema]), id_schema, [_MATCHED_ID])
        return links.map_batches(_removals, fn_kwargs={"shard_keys": shards.shard_keys}, batch_format="pyarrow")

    def _links(self, edges, shards: AnnotatedShards):
        """Per member of a component but its survivor: the survivor, and the verified edge
        that links the member in (``links``)."""
        components = right_sized(connected_components(edges))
        members = components.map_batches(links_module.members, batch_format="pyarrow")
        if self.config.survivor != "first":
            column, value_type, rank_key = _SURVIVOR_RANKING[self.config.survivor]
            members = shards.attach(members, SRC, ROW_SCHEMA, pa.schema([(column, value_type)])).map_batches(
                _ranked, fn_kwargs={"column": column, "rank_key": rank_key}, batch_format="pyarrow"
            )
        rows = members.union(edges.map_batches(links_module.edge_rows, batch_format="pyarrow"))
        rows = sorted_by(rows, SRC).map_batches(links_module.with_components, batch_size=None, batch_format="pyarrow")
        return right_sized(
            sorted_by(rows, COMPONENT).map_batches(
                links_module.component_links,
                fn_kwargs={"first_new": shards.first_new_node},
                batch_size=None,
                batch_format="pyarrow",
            )
        )

    def _with_sets(self, requests, request_schema: pa.Schema, shards: AnnotatedShards):
        """``requests`` with the signature or shingle set of ``src`` (``src_set``) and of
        ``dst`` (``dst_set``)."""
        column = pa.schema(
            [(MINHASH, pa.list_(pa.uint32(), self.config.num_perm))]
            if self.config.verify == "signature"
            else [(SHINGLES, pa.list_(pa.uint32()))]
        )
        with_src = shards.attach(requests, SRC, request_schema, column, ["src_set"])
        src_schema = pa.schema([*request_schema, ("src_set", column[0].type)])
        return shards.attach(with_src, DST, src_schema, column, ["dst_set"])

    def _verified(self, edges, shards: AnnotatedShards):
        """Each candidate edge gets both ends' signature or shingle set, then is kept, with its
        similarity, only if similar enough."""
        return self._with_sets(edges, EDGE_SCHEMA, shards).map_batches(
            _similar_enough,
            fn_kwargs={"threshold": self.config.threshold, "signature": self.config.verify == "signature"},
            batch_format="pyarrow",
        )

    def _direct_to_survivor(self, links, shards: AnnotatedShards):
        """``transitive: false``: only the members similar enough to the survivor itself, each
        matched to it."""
        return self._with_sets(links, LINK_SCHEMA, shards).map_batches(
            _similar_to_survivor,
            fn_kwargs={"threshold": self.config.threshold, "signature": self.config.verify == "signature"},
            batch_format="pyarrow",
        )


# survivor -> (column ranked, best first when sorted ascending by this key)
_SURVIVOR_RANKING = {
    "longest": (UNIT_COUNT, pa.int32(), lambda values: -values.astype(np.float64)),
    "lowest_perplexity": (PERPLEXITY, pa.float64(), lambda values: np.nan_to_num(values, nan=np.inf)),
}
_MATCHED_ID = "matched_id"


def _ranked(block: pa.Table, column: str, rank_key) -> pa.Table:
    rank = rank_key(block.column(column).to_numpy(zero_copy_only=False))
    return block.drop_columns([column]).set_column(
        ROW_SCHEMA.get_field_index(RANK), ROW_SCHEMA.field(RANK), pa.array(rank, pa.float64())
    )


def _unscored(block: pa.Table) -> pa.Table:
    return block.append_column(SIMILARITY, pa.array(np.full(block.num_rows, np.nan)))


def pair_similarities(block: pa.Table, signature: bool) -> np.ndarray:
    """Per row, the similarity of ``src_set`` and ``dst_set``: the share of equal signature
    values, or the true Jaccard similarity of the two shingle-hash sets."""
    a, b = block.column("src_set").combine_chunks(), block.column("dst_set").combine_chunks()
    if signature:
        width = a.type.list_size
        return np.mean(a.flatten().to_numpy().reshape(-1, width) == b.flatten().to_numpy().reshape(-1, width), axis=1)
    a_offsets, a_flat = a.offsets.to_numpy(), a.flatten().to_numpy()
    b_offsets, b_flat = b.offsets.to_numpy(), b.flatten().to_numpy()
    out = np.zeros(block.num_rows)
    for i in range(block.num_rows):
        x, y = a_flat[a_offsets[i] : a_offsets[i + 1]], b_flat[b_offsets[i] : b_offsets[i + 1]]
        shared = len(np.intersect1d(x, y, assume_unique=True))
        union = len(x) + len(y) - shared
        out[i] = shared / union if union else 1.0
    return out


def _similar_enough(block: pa.Table, threshold: float, signature: bool) -> pa.Table:
    if block.num_rows == 0:
        return SCORED_EDGE_SCHEMA.empty_table()
    similarity = pair_similarities(block, signature)
    keep = similarity >= threshold
    return pa.table(
        {SRC: block.column(SRC).filter(keep), DST: block.column(DST).filter(keep), SIMILARITY: similarity[keep]},
        schema=SCORED_EDGE_SCHEMA,
    )


def _similar_to_survivor(block: pa.Table, threshold: float, signature: bool) -> pa.Table:
    if block.num_rows == 0:
        return LINK_SCHEMA.empty_table()
    similarity = pair_similarities(block, signature)
    keep = similarity >= threshold
    survivor = block.column(DST).filter(keep)
    return pa.table(
        {SRC: block.column(SRC).filter(keep), DST: survivor, MATCHED: survivor, SIMILARITY: similarity[keep]},
        schema=LINK_SCHEMA,
    )


# Band rows sorted at once: the bands are grouped so that a group's rows (16 bytes per band
# per document) stay under this, and the object store never holds all of them. Measured at 1M
# documents (14 bands, 224 MB of rows): every worker that ran the sort mapped ~860 MB of the
# object store's pages.
GROUP_BYTES = 64 * 1024 * 1024


def band_groups(documents: int, bands: int) -> list[tuple[int, int]]:
    """Consecutive ``[first, last)`` band ranges whose rows fit ``GROUP_BYTES`` (one band a
    group at the most)."""
    groups = min(bands, max(1, -(-documents * bands * 16 // GROUP_BYTES)))
    bounds = [bands * g // groups for g in range(groups + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _band_rows(block: pa.Table, first: int, last: int) -> pa.Table:
    """(band_key, node) for bands ``first`` to ``last`` (exclusive) of every document with shingles."""
    keys = pc.list_slice(block.column(LSH_BANDS).combine_chunks(), first, last)
    per_document = pc.list_value_length(keys).fill_null(0).to_numpy(zero_copy_only=False)
    return pa.table({BAND_KEY: keys.flatten(), NODE: pa.array(np.repeat(block.column(NODE).to_numpy(), per_document))})


def _star_edges(block: pa.Table) -> pa.Table:
    """Each bucket becomes a star on its smallest node: n - 1 edges, never n^2."""
    if block.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    keys = block.column(BAND_KEY).to_numpy()
    nodes = block.column(NODE).to_numpy()
    if np.any(keys[1:] < keys[:-1]):  # a sort's blocks come sorted; anything else is grouped here
        order = np.argsort(keys, kind="stable")
        keys, nodes = keys[order], nodes[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    center = np.repeat(np.minimum.reduceat(nodes, starts), np.diff(np.r_[starts, len(nodes)]))
    spoke = nodes != center
    return pa.table({SRC: pa.array(nodes[spoke]), DST: pa.array(center[spoke])}, schema=EDGE_SCHEMA)


def _removals(block: pa.Table, shard_keys: list[str]) -> pa.Table:
    shards, rows = shards_and_rows(block.column(SRC).to_numpy(), shard_keys)
    survivor = shards_and_rows(block.column(DST).to_numpy(), shard_keys)
    matched_shards, matched_rows = shards_and_rows(block.column(MATCHED).to_numpy(), shard_keys)
    similarity = block.column(SIMILARITY).combine_chunks()
    matched = Matches(
        block.column(_MATCHED_ID),
        matched_shards,
        matched_rows,
        pa.array(similarity.to_numpy(zero_copy_only=False), pa.float64(), from_pandas=True),
    )
    return removal_table(
        shards, rows, None, "near_dedup", "near_duplicate", block.column(cols.ID), survivor, matched=matched
    )
