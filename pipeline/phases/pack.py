"""Phase 4, pack: per annotated shard, drop what dedup removed, tokenize, pack, and write a
Megatron indexed-dataset shard; then the manifest, last, as the commit point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import documents as cols
from pipeline import storage
from pipeline.config import JobSpec
from pipeline.formats import megatron
from pipeline.layout import OutputLayout
from pipeline.parquet_io import LazyParquetWriter
from pipeline.phases.annotate import REJECTS_SCHEMA
from pipeline.phases.shard_tasks import ShardWorker, run_shard_tasks
from pipeline.progress import Progress
from pipeline.stages.pack import concat_window_lengths
from pipeline.stages.tokenize import TOKENS, Tokenize

MANIFEST_VERSION = 1


def pack_config_hash(spec_hash: str, dedup_hash: str) -> str:
    payload = {"config": spec_hash, "dedup": dedup_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class ShardPacking:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.layout = OutputLayout(spec.output.uri)
        self.tokenizer = Tokenize(spec.stages.tokenize)
        self.tokenizer.setup()
        self.dtype = megatron.token_dtype(self.tokenizer.vocab_size)

    def _removals(self, key: str) -> pa.Table:
        options = self.spec.output.storage_options
        files = storage.list_files(self.layout.dedup_removals_of(key), options, suffix=".parquet")
        columns = [cols.ROW, cols.REJECT_STAGE, cols.REJECT_REASON, cols.DUPLICATE_OF]
        tables = []
        for uri in files:
            with storage.open_read(uri, options) as f:
                tables.append(pq.read_table(f, columns=columns))
        if not tables:
            return pa.schema([REJECTS_SCHEMA.field(c) for c in columns]).empty_table()
        return pa.concat_tables(tables).sort_by(cols.ROW)

    def run(self, key: str, config_hash: str) -> dict[str, Any]:
        started = time.perf_counter()
        options = self.spec.output.storage_options
        removals = self._removals(key)
        removed_rows = removals.column(cols.ROW).combine_chunks()
        removed: dict[str, dict[str, int]] = {}
        bin_digest = hashlib.sha256()
        total_tokens = kept_docs = kept_bytes = annotated_docs = 0
        storage.remove_tree(self.layout.dedup_rejects(key), options)
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(storage.open_read(self.layout.annotated(key), options))
            bin_sink = stack.enter_context(storage.atomic_writer(self.layout.token_bin(key), options))
            rejects = LazyParquetWriter(stack, self.layout.dedup_rejects(key), options, REJECTS_SCHEMA)
            for batch in pq.ParquetFile(source).iter_batches(batch_size=self.spec.input.batch_rows):
                docs = pa.Table.from_batches([batch])
                annotated_docs += docs.num_rows
                is_removed = pc.is_in(docs.column(cols.ROW), value_set=removed_rows)
                dropped = docs.filter(is_removed)
                if dropped.num_rows:
                    labels = removals.take(pc.index_in(dropped.column(cols.ROW), value_set=removed_rows))
                    for stage, reason in zip(labels.column(cols.REJECT_STAGE).to_pylist(),
                                             labels.column(cols.REJECT_REASON).to_pylist()):
                        per_stage = removed.setdefault(stage, {})
                        per_stage[reason] = per_stage.get(reason, 0) + 1
                    if self.spec.output.write_rejects:
                        table = dropped.select(cols.BASE_SCHEMA.names)
                        for name in (cols.REJECT_STAGE, cols.REJECT_REASON, cols.DUPLICATE_OF):
                            table = table.append_column(name, labels.column(name))
                        rejects.write(table)
                kept = docs.filter(pc.invert(is_removed))
                kept_docs += kept.num_rows
                kept_bytes += int(pc.sum(kept.column(cols.TEXT_BYTES)).as_py() or 0)
                if kept.num_rows:
                    tokens = self.tokenizer.process(kept).table.column(TOKENS).combine_chunks()
                    flat = tokens.flatten().to_numpy(zero_copy_only=False).astype(self.dtype, copy=False)
                    data = megatron.encode_bin(flat, self.dtype)
                    bin_sink.write(data)
                    bin_digest.update(data)
                    total_tokens += len(flat)
        lengths = concat_window_lengths(total_tokens, self.spec.stages.pack.seq_len)
        index = megatron.encode_index(self.dtype, lengths, np.arange(len(lengths) + 1, dtype=np.int64))
        storage.write_bytes(self.layout.token_idx(key), index, options)
        stats = {
            "shard_key": key, "config_hash": config_hash, "annotated_docs": annotated_docs, "removed": removed,
            "kept_docs": kept_docs, "kept_bytes": kept_bytes, "tokens": total_tokens, "sequences": int(len(lengths)),
            "bin": f"tokens/{key}.bin", "idx": f"tokens/{key}.idx",
            "bin_sha256": bin_digest.hexdigest(), "idx_sha256": hashlib.sha256(index).hexdigest(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        storage.write_json(self.layout.pack_marker(key), stats, options)
        return stats


class ShardPacker(ShardWorker):
    phase = "pack"

    def __init__(self, spec_json: str) -> None:
        super().__init__(spec_json)
        self.packing = ShardPacking(self.spec)

    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.packing.run(item["key"], item["config_hash"])


def run_pack(spec: JobSpec, keys: list[str], removals_version: dict[str, str], progress: Progress,
             max_workers: int) -> list[dict[str, Any]]:
    """``removals_version``: per shard, the dedup run whose removals apply to it."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    finished: dict[str, dict[str, Any]] = {}
    items = []
    spec_hash = spec.config_hash()  # reads every model file's metadata: once, not per shard
    for key in keys:
        config_hash = pack_config_hash(spec_hash, removals_version[key])
        marker = layout.pack_marker(key)
        if storage.exists(marker, options):
            stats = storage.read_json(marker, options)
            if stats.get("config_hash") == config_hash:
                finished[key] = stats
                continue
        items.append({"key": key, "config_hash": config_hash})
    progress.start("pack", total=len(keys), unit="shards", skipped=len(finished))
    for stats in run_shard_tasks(ShardPacker, spec, items, max_workers):
        finished[stats["shard_key"]] = stats
        progress.advance(1, docs=stats["kept_docs"], nbytes=stats["kept_bytes"])
    return [finished[key] for key in keys]


def write_manifest(spec: JobSpec, pack_stats: list[dict[str, Any]], annotate_stats: list[dict[str, Any]]) -> dict:
    """The commit point of a run: written only after every shard it lists is complete."""
    layout = OutputLayout(spec.output.uri)
    tokenizer = Tokenize(spec.stages.tokenize)
    tokenizer.setup()
    shards = [
        {k: s[k] for k in ("shard_key", "bin", "idx", "bin_sha256", "idx_sha256", "tokens", "sequences", "kept_docs")}
        for s in sorted(pack_stats, key=lambda s: s["shard_key"]) if s["tokens"] > 0
    ]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "job": spec.name,
        "config_hash": spec.config_hash(),
        "format": "megatron-indexed-dataset",
        "dtype": megatron.token_dtype(tokenizer.vocab_size).name,
        "seq_len": spec.stages.pack.seq_len,
        "pack_mode": spec.stages.pack.mode,
        "tokenizer": {
            "uri": spec.stages.tokenize.model,
            "sha256": storage.sha256_of(spec.stages.tokenize.model, spec.stages.tokenize.storage_options),
            "vocab_size": tokenizer.vocab_size, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id,
            "add_bos": spec.stages.tokenize.add_bos, "add_eos": spec.stages.tokenize.add_eos,
        },
        "totals": {
            "documents": sum(s["kept_docs"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "sequences": sum(s["sequences"] for s in shards),
        },
        "shards": shards,
        "inputs": [{"uri": s["uri"], **s["fingerprint"]} for s in annotate_stats],
    }
    storage.write_json(layout.manifest, manifest, spec.output.storage_options)
    return manifest
