"""Phase 2, dedup: global stages over the key columns of every annotated document.

Removals are written partitioned by shard (``work/dedup/removed/shard_key=<key>/``) so
the pack phase reads only its own shard's; ``_COMMITTED.json`` with the counts is
written last and names the annotated inputs it was computed from.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline import documents as cols
from pipeline.annotated import NODE, AnnotatedShards, node_ids, shard_ordinals
from pipeline import storage
from pipeline.config import JobSpec
from pipeline.layout import OutputLayout
from pipeline.progress import Progress
from pipeline.stages.base import REMOVAL_SCHEMA, GlobalStage
from pipeline.stages.registry import global_stages


_RANK = "stage_rank"


def _with_node_and_rank(block, shard_keys: list[str], rank: int):
    import pyarrow as pa

    nodes = node_ids(shard_ordinals(block.column(cols.SHARD), shard_keys), block.column(cols.ROW).to_numpy())
    return block.append_column(NODE, pa.array(nodes)).append_column(_RANK, pa.array([rank] * block.num_rows, pa.int8()))


def _first_stage_per_document(block):
    """Equal nodes share a block after the sort; keep each document's highest-precedence removal."""
    import numpy as np
    import pyarrow as pa

    if block.num_rows == 0:
        return block.select(REMOVAL_SCHEMA.names)
    nodes, ranks = block.column(NODE).to_numpy(), block.column(_RANK).to_numpy()
    order = np.lexsort((ranks, nodes))
    nodes = nodes[order]
    first = np.r_[True, nodes[1:] != nodes[:-1]]
    return block.take(pa.array(order[first])).select(REMOVAL_SCHEMA.names)


def combined_removals(stages: list[GlobalStage], shards: AnnotatedShards):
    shard_keys = shards.shard_keys
    parts = [
        stage.find_removals(shards).map_batches(
            _with_node_and_rank, fn_kwargs={"shard_keys": shard_keys, "rank": rank}, batch_format="pyarrow"
        )
        for rank, stage in enumerate(stages)
    ]
    merged = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return merged.sort(NODE).map_batches(_first_stage_per_document, batch_size=None, batch_format="pyarrow")


def dedup_input_hash(spec: JobSpec, annotate_stats: list[dict[str, Any]]) -> str:
    payload = {
        "stages": [s.name for s in global_stages(spec)],
        "config": spec.stages.model_dump(mode="json", exclude={"tokenize", "pack"}),
        "shards": sorted(
            (s["shard_key"], s["config_hash"], json.dumps(s["fingerprint"], sort_keys=True), s["annotated_docs"])
            for s in annotate_stats
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def count_removals(block):
    """Per-block counts by shard, stage and reason; summed on the driver (a few rows per shard)."""
    import pyarrow as pa

    group = [cols.SHARD, cols.REJECT_STAGE, cols.REJECT_REASON]
    return block.group_by(group).aggregate([(cols.ROW, "count")]).rename_columns(group + ["count"]).cast(
        pa.schema([(c, pa.string()) for c in group] + [("count", pa.int64())])
    )


def run_dedup(spec: JobSpec, annotate_stats: list[dict[str, Any]], progress: Progress) -> dict[str, Any]:

    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    input_hash = dedup_input_hash(spec, annotate_stats)
    if storage.exists(layout.dedup_marker, options):
        marker = storage.read_json(layout.dedup_marker, options)
        if marker.get("input_hash") == input_hash:
            progress.log("dedup: already committed for these annotated shards, skipped")
            return marker
    storage.remove_tree(layout.dedup_dir, options)

    stages = global_stages(spec)
    with_docs = [s["shard_key"] for s in annotate_stats if s["annotated_docs"] > 0]
    progress.start("dedup", total=1, unit="global passes")
    removed: dict[str, dict[str, dict[str, int]]] = {}
    if stages and with_docs:
        fs, removals_path = storage.pyarrow_filesystem(layout.dedup_removals, options)
        shards = AnnotatedShards({key: layout.annotated(key) for key in with_docs}, options)
        removals = combined_removals(stages, shards).materialize()
        counts = removals.map_batches(count_removals, batch_size=None, batch_format="pyarrow").take_all()
        if counts:
            removals.write_parquet(removals_path, partition_cols=[cols.SHARD], filesystem=fs)
        for row in counts:
            per_stage = removed.setdefault(row[cols.SHARD], {}).setdefault(row[cols.REJECT_STAGE], {})
            per_stage[row[cols.REJECT_REASON]] = per_stage.get(row[cols.REJECT_REASON], 0) + int(row["count"])
        progress.advance(1, docs=sum(int(r["count"]) for r in counts))
    near = spec.stages.near_dedup
    marker = {"input_hash": input_hash, "removed_by_shard": removed,
              "near_dedup": {"threshold": near.threshold, "num_perm": near.num_perm, "bands": near.banding()[0],
                             "rows": near.banding()[1], "candidate_probability": near.s_curve()}
              if near.enabled else None,
              "removed_total": sum(n for s in removed.values() for r in s.values() for n in r.values())}
    storage.write_json(layout.dedup_marker, marker, options)
    return marker
