"""Phase 2, dedup: global stages over the key columns of the annotated documents.

Removals are written partitioned by shard (``work/dedup/removed/shard_key=<key>/``) so
the pack phase reads only its own shard's; ``_COMMITTED.json`` with the counts is
written last and names the annotated inputs it was computed from.

The dedup index (``index/``) makes runs incremental. After a dedup phase, each shard it
deduplicated gets an index shard: its kept documents with the columns the global stages
read (hashes, band keys, shingle sets, ids; no text). A later run on a grown input
deduplicates only the shards that are not indexed yet, against the indexed documents,
which always survive; earlier decisions stand. The index is rebuilt from scratch when
the dedup configuration changed or an indexed shard changed or disappeared.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.annotated import NODE, AnnotatedShards, node_ids, shard_ordinals, shards_and_rows
from pipeline.core.blocks import right_sized, sorted_by
from pipeline.core.hashing import short_hash
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import AnnotateMarker, DedupMarker, Marker, RemovedCounts
from pipeline.core.parquet_io import LazyParquetWriter
from pipeline.core.progress import Progress, plural
from pipeline.phases.annotate.phase import ANNOTATION_FORMAT
from pipeline.phases.shard_tasks import ShardWorker, run_shard_tasks
from pipeline.stages.base import REMOVAL_SCHEMA, GlobalStage
from pipeline.stages.registry import global_stages

INDEX_VERSION = 1

_RANK = "stage_rank"


def _with_node_and_rank(block, shard_keys: list[str], rank: int):
    nodes = node_ids(shard_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy())
    return block.append_column(NODE, pa.array(nodes)).append_column(_RANK, pa.array([rank] * block.num_rows, pa.int8()))


def _first_stage_per_document(block, first_new_node: int):
    """Equal nodes share a block after the sort; keep each document's highest-precedence
    removal, and never remove a document an earlier run kept."""
    import numpy as np

    if block.num_rows == 0:
        return block.select(REMOVAL_SCHEMA.names)
    nodes, ranks = block.column(NODE).to_numpy(), block.column(_RANK).to_numpy()
    order = np.lexsort((ranks, nodes))
    nodes = nodes[order]
    first = np.r_[True, nodes[1:] != nodes[:-1]] & (nodes >= first_new_node)
    return block.take(pa.array(order[first])).select(REMOVAL_SCHEMA.names)


_KEY, _TO, _COUNT, _MOVED = "key", "to", "count", "moved"
_COUNTS = pa.schema([(_KEY, pa.int64()), (_COUNT, pa.int64())])


def _duplicate_links(block, shard_keys: list[str]):
    """(removed document's node, its survivor's node) for each removal that names a survivor."""
    block = block.filter(pc.is_valid(block.column(cols.SURVIVOR_SHARD)))
    node = node_ids(shard_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy())
    to = node_ids(
        shard_ordinals(block.column(cols.SURVIVOR_SHARD), shard_keys), block.column(cols.SURVIVOR_ROW).to_numpy()
    )
    return pa.table({_KEY: pa.array(node, pa.int64()), _TO: pa.array(to, pa.int64())})


def _first_counts(block):
    return pa.table({_KEY: block.column(_TO), _COUNT: pa.array([1] * block.num_rows, pa.int64())}, schema=_COUNTS)


def _tagged(block, link: bool):
    n = block.num_rows
    return pa.table(
        {
            _KEY: block.column(_KEY),
            _TO: block.column(_TO) if link else pa.nulls(n, pa.int64()),
            _COUNT: pa.nulls(n, pa.int64()) if link else block.column(_COUNT),
        }
    )


def _follow_links(block):
    """Counts whose key was itself removed move on to that document's survivor: a document
    exact dedup removed for one that near dedup removed belongs to the latter's cluster.
    After the sort, a key's link and its counts share the block."""
    import numpy as np

    to_column = block.column(_TO).combine_chunks()
    links = block.filter(pc.is_valid(to_column))
    counts = block.filter(pc.is_null(to_column))
    if counts.num_rows == 0:
        return pa.table(
            {_KEY: pa.array([], pa.int64()), _COUNT: pa.array([], pa.int64()), _MOVED: pa.array([], pa.bool_())}
        )
    keys = counts.column(_KEY).to_numpy()
    index = pc.index_in(counts.column(_KEY), value_set=links.column(_KEY))
    moved = pc.is_valid(index).to_numpy(zero_copy_only=False)
    forward = links.column(_TO).combine_chunks().take(index).to_numpy(zero_copy_only=False)
    new_keys = np.where(moved, forward, keys).astype(np.int64)
    return pa.table({_KEY: new_keys, _COUNT: counts.column(_COUNT), _MOVED: pa.array(moved)})


def _sum_per_key(block):
    if block.num_rows == 0:
        return _COUNTS.empty_table()
    summed = block.group_by(_KEY).aggregate([(_COUNT, "sum")]).rename_columns([_KEY, _COUNT])
    return summed.cast(_COUNTS)


def _as_survivor_rows(block, shard_keys: list[str]):
    shards, rows = shards_and_rows(block.column(_KEY).to_numpy(), shard_keys)
    return pa.table({cols.SHARD: shards, cols.ROW: rows, cols.CLUSTER_SIZE: block.column(_COUNT)})


def duplicate_clusters(removals, shard_keys: list[str], max_depth: int = 8):
    """Per survivor, the documents this run removed as its duplicates (``cols.CLUSTER_SIZE``
    here counts only those), following removed-for-a-removed-document links to the end."""
    # removals keep the blocks of the documents they came from (hundreds at 1M documents):
    # coalesced first, or every sort below would shuffle that many tiny blocks
    links = right_sized(
        removals.map_batches(_duplicate_links, fn_kwargs={"shard_keys": shard_keys}, batch_format="pyarrow")
    )
    counts = links.map_batches(_first_counts, batch_format="pyarrow")
    for _ in range(max_depth):
        merged = links.map_batches(_tagged, fn_kwargs={"link": True}, batch_format="pyarrow").union(
            counts.map_batches(_tagged, fn_kwargs={"link": False}, batch_format="pyarrow")
        )
        step = sorted_by(merged, _KEY).map_batches(_follow_links, batch_size=None, batch_format="pyarrow")
        step = step.materialize()
        counts = step.select_columns([_KEY, _COUNT])
        if not step.sum(_MOVED):
            break
    summed = sorted_by(counts, _KEY).map_batches(_sum_per_key, batch_size=None, batch_format="pyarrow")
    return summed.map_batches(_as_survivor_rows, fn_kwargs={"shard_keys": shard_keys}, batch_format="pyarrow")


_SIZE = "size"
_HISTOGRAM = pa.schema([(cols.REJECT_STAGE, pa.string()), (_SIZE, pa.int64()), (_COUNT, pa.int64())])


def _survivor_keys(block, shard_keys: list[str]):
    """(stage, survivor node) of each removal that names a survivor."""
    block = block.filter(pc.is_valid(block.column(cols.SURVIVOR_SHARD)))
    to = node_ids(
        shard_ordinals(block.column(cols.SURVIVOR_SHARD), shard_keys), block.column(cols.SURVIVOR_ROW).to_numpy()
    )
    return pa.table({cols.REJECT_STAGE: block.column(cols.REJECT_STAGE), _TO: pa.array(to, pa.int64())})


def _size_histogram(block):
    """Sorted by stage and survivor: per stage, how many clusters have each size (the
    survivor and the documents removed for it)."""
    if block.num_rows == 0:
        return _HISTOGRAM.empty_table()
    sizes = block.group_by([cols.REJECT_STAGE, _TO]).aggregate([(_TO, "count")])
    sizes = sizes.append_column(_SIZE, pc.add(sizes.column(f"{_TO}_count"), 1))
    counted = sizes.group_by([cols.REJECT_STAGE, _SIZE]).aggregate([(_SIZE, "count")])
    return counted.rename_columns([cols.REJECT_STAGE, _SIZE, _COUNT]).select(_HISTOGRAM.names).cast(_HISTOGRAM)


def cluster_size_histograms(removals, shard_keys: list[str]) -> dict[str, dict[str, int]]:
    """Per stage, clusters by size (``{"2": clusters, ...}``) among this run's removals: a
    sort by survivor (a cluster's removals meet in one block), then a few rows per block
    summed on the driver."""
    keys = removals.map_batches(_survivor_keys, fn_kwargs={"shard_keys": shard_keys}, batch_format="pyarrow")
    rows = sorted_by(keys, [cols.REJECT_STAGE, _TO]).map_batches(
        _size_histogram, batch_size=None, batch_format="pyarrow"
    )
    out: dict[str, dict[str, int]] = {}
    for row in rows.take_all():
        per_stage = out.setdefault(row[cols.REJECT_STAGE], {})
        per_stage[str(row[_SIZE])] = per_stage.get(str(row[_SIZE]), 0) + int(row[_COUNT])
    return {stage: dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))) for stage, sizes in sorted(out.items())}


def combined_removals(stages: list[GlobalStage], shards: AnnotatedShards):
    shard_keys = shards.shard_keys
    parts = [
        stage.find_removals(shards).map_batches(
            _with_node_and_rank, fn_kwargs={"shard_keys": shard_keys, "rank": rank}, batch_format="pyarrow"
        )
        for rank, stage in enumerate(stages)
    ]
    merged = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return sorted_by(merged, NODE).map_batches(
        _first_stage_per_document,
        fn_kwargs={"first_new_node": shards.first_new_node},
        batch_size=None,
        batch_format="pyarrow",
    )


def dedup_input_hash(spec: JobSpec, annotate_stats: list[AnnotateMarker]) -> str:
    """What this run's removals are computed from: the dedup settings and the annotated shards."""
    payload = {
        "stages": [s.name for s in global_stages(spec)],
        "config": spec.capability_settings(),
        "shards": sorted(
            (s.shard_key, s.config_hash, json.dumps(s.fingerprint, sort_keys=True), s.annotated_docs)
            for s in annotate_stats
        ),
    }
    if spec.counts_duplicates:
        payload["clusters"] = True
    return short_hash(payload)


def count_removals(block):
    """Per-block counts by shard, stage and reason; summed on the driver (a few rows per shard)."""
    group = [cols.SHARD, cols.REJECT_STAGE, cols.REJECT_REASON]
    return (
        block.group_by(group)
        .aggregate([(cols.ROW, "count")])
        .rename_columns(group + ["count"])
        .cast(pa.schema([(c, pa.string()) for c in group] + [("count", pa.int64())]))
    )


def dedup_config_hash(spec: JobSpec) -> str:
    """What removals depend on besides the annotated shards themselves."""
    payload = {
        "format": ANNOTATION_FORMAT,
        "index": INDEX_VERSION,
        "stages": [s.name for s in global_stages(spec)],
        "config": spec.capability_settings(),
    }
    if spec.counts_duplicates:  # an index built without cluster counts is rebuilt once with them
        payload["clusters"] = True
    return short_hash(payload)


def _usable_index(spec: JobSpec, annotate_stats: list[AnnotateMarker], progress: Progress) -> dict[str, Any]:
    """The index manifest (indexed shards, stage state), or {} when it is missing or no
    longer valid."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    if not storage.exists(layout.index_manifest, options):
        return {}
    index = storage.read_json(layout.index_manifest, options)
    if index.get("config_hash") != dedup_config_hash(spec):
        progress.log("dedup index: built with another dedup configuration; rebuilding it from all shards")
        return {}
    current = {s.shard_key: s for s in annotate_stats}
    for key, entry in index["shards"].items():
        shard = current.get(key)
        if shard is None or (shard.fingerprint, shard.config_hash) != (
            entry["fingerprint"],
            entry["annotate_config_hash"],
        ):
            progress.log(
                f"dedup index: input shard {key} changed or disappeared since it was indexed; "
                "rebuilding the index from all shards"
            )
            return {}
    return index


def run_dedup(spec: JobSpec, annotate_stats: list[AnnotateMarker], progress: Progress) -> DedupMarker:
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    input_hash = dedup_input_hash(spec, annotate_stats)
    if storage.exists(layout.dedup_marker, options):
        marker = DedupMarker.from_json(storage.read_json(layout.dedup_marker, options))
        if marker.input_hash == input_hash:
            progress.reused("dedup", 1, "already committed for these annotated shards, skipped")
            return marker

    stages = global_stages(spec)
    index = _usable_index(spec, annotate_stats, progress) if stages else {}
    indexed = index.get("shards", {})
    for stage in stages:
        stage.previous_state = index.get("stage_state", {}).get(stage.name)
    new = [s for s in annotate_stats if s.shard_key not in indexed]
    storage.remove_tree(layout.dedup_marker, options)
    if indexed:
        for shard in new:
            storage.remove_tree(layout.dedup_removals_of(shard.shard_key), options)
    else:
        storage.remove_tree(layout.dedup_dir, options)
        storage.remove_tree(layout.index_dir, options)

    with_docs = [s.shard_key for s in new if s.annotated_docs > 0]
    if indexed:
        progress.log(
            f"dedup: {plural(len(new), 'new shard')} against the index of {plural(len(indexed), 'shard')} "
            "kept by earlier runs"
        )
    progress.start("dedup", total=1, unit="global pass")
    removed: dict[str, RemovedCounts] = {}
    cluster_sizes: dict[str, dict[str, int]] = {}
    # per survivor shard, the dedup runs that removed duplicates of its documents
    cluster_runs = {key: list(e.get("cluster_runs", [])) for key, e in indexed.items()}
    if stages and with_docs:
        fs, removals_path = storage.pyarrow_filesystem(layout.dedup_removals, options)
        shards = AnnotatedShards(
            {key: layout.annotated(key) for key in with_docs},
            options,
            {key: layout.index_shard(key) for key, e in indexed.items() if e["kept_docs"]},
        )
        removals = combined_removals(stages, shards).materialize()
        counts = removals.map_batches(count_removals, batch_size=None, batch_format="pyarrow").take_all()
        if counts:
            removals.write_parquet(removals_path, partition_cols=[cols.SHARD], filesystem=fs)
            cluster_sizes = cluster_size_histograms(removals, shards.shard_keys)
            clusters_run = layout.dedup_clusters_run(input_hash)
            storage.remove_tree(clusters_run, options)
            clusters = duplicate_clusters(removals, shards.shard_keys).materialize() if spec.counts_duplicates else None
            if clusters is not None and clusters.count():
                clusters_fs, clusters_path = storage.pyarrow_filesystem(clusters_run, options)
                clusters.write_parquet(clusters_path, partition_cols=[cols.SHARD], filesystem=clusters_fs)
                for row in clusters.unique(cols.SHARD):
                    cluster_runs.setdefault(row, []).append(input_hash)
        for row in counts:
            per_stage = removed.setdefault(row[cols.SHARD], {}).setdefault(row[cols.REJECT_STAGE], {})
            per_stage[row[cols.REJECT_REASON]] = per_stage.get(row[cols.REJECT_REASON], 0) + int(row["count"])
    # what the pass read: the new shards' documents (the index's are read as well, but were counted before)
    progress.advance(1, docs=sum(s.annotated_docs for s in new), nbytes=sum(s.annotated_bytes for s in new))
    stage_state = {s.name: s.state or s.previous_state for s in stages if s.state or s.previous_state}
    cluster_runs = {key: sorted(set(runs)) for key, runs in cluster_runs.items() if runs}
    if stages:
        _extend_index(spec, stages, new, removed, indexed, input_hash, stage_state, cluster_runs)

    removed_by_shard = {key: e["removed"] for key, e in indexed.items() if e["removed"]} | removed
    marker = DedupMarker(
        input_hash=input_hash,
        removed_by_shard=removed_by_shard,
        removals_version={
            s.shard_key: indexed[s.shard_key]["removals_version"] if s.shard_key in indexed else input_hash
            for s in annotate_stats
        },
        cluster_runs=cluster_runs,
        index={"indexed_shards": len(indexed), "new_shards": len(new)},
        stage_state=stage_state,
        cluster_sizes=cluster_sizes,
        removed_total=sum(n for s in removed_by_shard.values() for r in s.values() for n in r.values()),
    )
    storage.write_json(layout.dedup_marker, marker.to_json(), options)
    return marker


def _extend_index(
    spec: JobSpec,
    stages: list[GlobalStage],
    new: list[AnnotateMarker],
    removed: dict[str, RemovedCounts],
    indexed: dict[str, Any],
    input_hash: str,
    stage_state: dict[str, Any],
    cluster_runs: dict[str, list[str]],
) -> None:
    """Index shards for this run's shards, then the index manifest naming old and new ones."""
    layout = OutputLayout(spec.output.uri)
    columns = sorted({cols.SHARD, cols.ROW, cols.ID, *(c for stage in stages for c in stage.index_columns)})
    items = [{"key": s.shard_key, "columns": columns} for s in new if s.annotated_docs > 0]
    kept = {done.shard_key: done.kept_docs for done in run_shard_tasks(ShardIndexer, spec, items, len(items))}
    shards = dict(indexed)
    for s in new:
        shards[s.shard_key] = {
            "fingerprint": s.fingerprint,
            "annotate_config_hash": s.config_hash,
            "kept_docs": kept.get(s.shard_key, 0),
            "removed": removed.get(s.shard_key, {}),
            "removals_version": input_hash,
        }
    for key, entry in shards.items():
        shards[key] = {**entry, "cluster_runs": cluster_runs.get(key, [])}
    storage.write_json(
        layout.index_manifest,
        {
            "version": INDEX_VERSION,
            "config_hash": dedup_config_hash(spec),
            "shards": shards,
            "stage_state": stage_state,
        },
        spec.output.storage_options,
    )


@dataclass
class IndexedShard(Marker):
    shard_key: str
    kept_docs: int


class ShardIndexer(ShardWorker):
    """Writes one shard's kept documents, index columns only, to ``index/shards/<key>.parquet``."""

    phase = "dedup index"
    marker = IndexedShard

    def run(self, item: dict[str, Any]) -> IndexedShard:
        layout = OutputLayout(self.spec.output.uri)
        options = self.spec.output.storage_options
        key = item["key"]
        removed_rows = read_removals(layout, key, options).column(cols.ROW).combine_chunks()
        kept_docs = 0
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(storage.open_read(layout.annotated(key), options))
            sink = LazyParquetWriter(stack, layout.index_shard(key), options)
            for batch in pq.ParquetFile(source).iter_batches(
                batch_size=self.spec.input.batch_rows, columns=item["columns"]
            ):
                docs = pa.Table.from_batches([batch])
                docs = docs.filter(pc.invert(pc.is_in(docs.column(cols.ROW), value_set=removed_rows)))
                sink.write(docs)
                kept_docs += docs.num_rows
        return IndexedShard(key, kept_docs)


REMOVAL_COLUMNS = [
    cols.ROW,
    cols.REJECT_STAGE,
    cols.REJECT_REASON,
    cols.DUPLICATE_OF,
    cols.SURVIVOR_SHARD,
    cols.SURVIVOR_ROW,
    cols.MATCHED_TO,
    cols.MATCHED_SHARD,
    cols.MATCHED_ROW,
    cols.SIMILARITY,
]


def read_cluster_sizes(layout: OutputLayout, key: str, runs: list[str], options: storage.StorageOptions) -> pa.Table:
    """Per kept document of a shard with duplicates: ``row`` and ``duplicate_count`` (the
    documents of its cluster, itself included), summed over the dedup runs that removed any."""
    tables = []
    for run in runs:
        for uri in storage.list_files(layout.dedup_clusters_of(run, key), options, suffix=".parquet"):
            with storage.open_read(uri, options) as f:
                tables.append(pq.read_table(f, columns=[cols.ROW, cols.CLUSTER_SIZE]))
    if not tables:
        return pa.table({cols.ROW: pa.array([], pa.int64()), cols.CLUSTER_SIZE: pa.array([], pa.int64())})
    table = pa.concat_tables(tables).group_by(cols.ROW).aggregate([(cols.CLUSTER_SIZE, "sum")])
    sizes = pc.add(table.column(f"{cols.CLUSTER_SIZE}_sum"), 1)
    return pa.table({cols.ROW: table.column(cols.ROW), cols.CLUSTER_SIZE: sizes}).sort_by(cols.ROW)


def read_removals(layout: OutputLayout, key: str, options: storage.StorageOptions) -> pa.Table:
    """The committed removals of one shard (row, stage, reason, duplicate_of and the
    survivor's shard and row; a near duplicate's matched_to, its shard and row, and their
    similarity), by row."""
    schema = pa.schema([REMOVAL_SCHEMA.field(c) for c in REMOVAL_COLUMNS])
    tables = []
    for uri in storage.list_files(layout.dedup_removals_of(key), options, suffix=".parquet"):
        with storage.open_read(uri, options) as f:
            table = pq.read_table(f)
        # removals written before survivors (or matches) were recorded lack those columns
        tables.append(
            pa.table(
                [
                    table.column(c).cast(schema.field(c).type)
                    if c in table.column_names
                    else pa.nulls(table.num_rows, schema.field(c).type)
                    for c in REMOVAL_COLUMNS
                ],
                schema=schema,
            )
        )
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).sort_by(cols.ROW)
