"""The global half of near dedup: LSH buckets → star edges → verified edges → connected
components → one survivor per component."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, AnnotatedShards, shards_and_rows
from pipeline.core.blocks import right_sized, sorted_by
from pipeline.core.columns import PERPLEXITY
from pipeline.stages.base import GlobalStage, removal_table
from pipeline.stages.near_dedup.components import DST, EDGE_SCHEMA, SRC, connected_components, distinct_edges
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
        components = right_sized(connected_components(edges))
        if self.config.survivor != "first":
            components = _ranked_survivors(components, shards, self.config.survivor)
        survivors = shards.attach(components, DST, EDGE_SCHEMA, pa.schema([(cols.ID, pa.string())]))
        return survivors.map_batches(_removals, fn_kwargs={"shard_keys": shards.shard_keys}, batch_format="pyarrow")

    def _verified(self, edges, shards: AnnotatedShards):
        """Each candidate edge gets both ends' signature or shingle set, then is kept only if
        similar enough."""
        signature = self.config.verify == "signature"
        column = pa.schema(
            [(MINHASH, pa.list_(pa.uint32(), self.config.num_perm))]
            if signature
            else [(SHINGLES, pa.list_(pa.uint32()))]
        )
        with_src = shards.attach(edges, SRC, EDGE_SCHEMA, column, ["src_set"])
        src_schema = pa.schema([*EDGE_SCHEMA, ("src_set", column[0].type)])
        with_both = shards.attach(with_src, DST, src_schema, column, ["dst_set"])
        return with_both.map_batches(
            _similar_enough,
            fn_kwargs={"threshold": self.config.threshold, "signature": signature},
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
    return sorted_by(with_value, DST).map_batches(
        _point_at_best,
        fn_kwargs={"first_new": shards.first_new_node, "survivor": survivor},
        batch_size=None,
        batch_format="pyarrow",
    )


def _members_with_root(block: pa.Table) -> pa.Table:
    roots = np.unique(block.column(DST).to_numpy())
    return pa.table(
        {
            SRC: pa.array(np.r_[block.column(SRC).to_numpy(), roots]),
            DST: pa.array(np.r_[block.column(DST).to_numpy(), roots]),
        },
        schema=EDGE_SCHEMA,
    )


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
        agreement = np.mean(
            a.flatten().to_numpy().reshape(-1, width) == b.flatten().to_numpy().reshape(-1, width), axis=1
        )
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
    return removal_table(shards, rows, None, "near_dedup", "near_duplicate", block.column(cols.ID), survivor)
