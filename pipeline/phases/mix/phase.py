"""Phase 4, mix: sampling rates per domain from the tokenized shards' counts, then, per
shard, how many copies of each document the output gets.

Documents with no copy (downsampled, or in a domain of weight 0) are rejected here with
stage ``mix``, so counts still balance. The plan, with the exact tokens each domain will
contribute and the number of output shards, is written to ``work/mix/_PLAN.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import DOMAIN, NUM_TOKENS, SHUFFLE_KEY
from pipeline.core.hashing import short_hash
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import SampleMarker, TokenizeMarker
from pipeline.core.parquet_io import LazyParquetWriter
from pipeline.core.progress import Progress
from pipeline.phases.mix.plan import (
    STAGE_NAME,
    copy_counts,
    document_rates,
    effective_rate,
    plan_mixture,
    shard_boundaries,
)
from pipeline.phases.shard_tasks import ShardWorker, committed, run_shard_tasks

MIX_FORMAT = 3  # 3: amounts in the plan's unit (tokens or text bytes)
NOT_SAMPLED = "not_sampled"
ZERO_WEIGHT = "domain_weight_zero"
ZERO_REHYDRATION = "rehydration_weight_zero"


def domain_rates(domains: pa.Array, rates: dict[str, float]) -> np.ndarray:
    names = pa.array(sorted(rates), pa.string())
    values = np.asarray([rates[n] for n in names.to_pylist()] + [0.0])
    index = pc.fill_null(pc.index_in(domains, value_set=names), len(names)).to_numpy(zero_copy_only=False)
    return values[index]


class ShardSampler(ShardWorker):
    phase = "mix"
    marker = SampleMarker

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.layout = OutputLayout(spec.output.uri)

    def run(self, item: dict[str, Any]) -> SampleMarker:
        return self.sample(item["key"], item["config_hash"], json.loads(item["rates"]))

    def sample(self, key: str, config_hash: str, rates: dict[str, float]) -> SampleMarker:
        started = time.perf_counter()
        options = self.spec.output.storage_options
        columns = [cols.ROW, DOMAIN, SHUFFLE_KEY, cols.TEXT_BYTES]
        columns += [NUM_TOKENS] if self.spec.output.writes_tokens else []
        columns += [cols.MIX_WEIGHT] if self.spec.stages.mix.rehydration else []
        with storage.open_read(self.layout.tokenized(key), options) as f:
            table = pq.read_table(f, columns=columns)
        domain = table.column(DOMAIN).combine_chunks()
        weights = table.column(cols.MIX_WEIGHT).to_numpy() if cols.MIX_WEIGHT in table.column_names else None
        of_domain = domain_rates(domain, rates)
        row_rates = document_rates(of_domain, weights, self.spec.stages.mix.max_epochs)
        copies = copy_counts(table.column(SHUFFLE_KEY).to_numpy(), row_rates)
        text_bytes = table.column(cols.TEXT_BYTES).to_numpy()
        tokens = table.column(NUM_TOKENS).to_numpy() if NUM_TOKENS in table.column_names else np.zeros_like(text_bytes)
        names = domain.to_numpy(zero_copy_only=False)
        per_domain: dict[str, dict[str, int]] = {}
        for name in np.unique(names).tolist() if len(names) else []:
            mask = names == name
            per_domain[name] = {
                "docs": int(np.count_nonzero(copies[mask])),
                "copies": int(copies[mask].sum()),
                "tokens": int((copies[mask] * tokens[mask]).sum()),
                "bytes": int((copies[mask] * text_bytes[mask]).sum()),
            }
        dropped = copies == 0
        reasons = np.where(
            of_domain[dropped] == 0, ZERO_WEIGHT, np.where(row_rates[dropped] == 0, ZERO_REHYDRATION, NOT_SAMPLED)
        )
        unsampled = {r: int(n) for r, n in zip(*np.unique(reasons, return_counts=True))} if len(reasons) else {}
        storage.remove_tree(self.layout.mix_rejects(key), options)
        if self.spec.output.write_rejects and dropped.any():
            self._write_rejects(key, table.column(cols.ROW).to_numpy()[dropped], reasons)
        stats = SampleMarker(
            shard_key=key,
            config_hash=config_hash,
            kept_docs=int(np.count_nonzero(copies)),
            copies=int(copies.sum()),
            tokens=int((copies * tokens).sum()),
            copy_bytes=int((copies * text_bytes).sum()),
            kept_bytes=int(text_bytes[copies > 0].sum()),
            unsampled={STAGE_NAME: unsampled} if unsampled else {},
            domains=per_domain,
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json(self.layout.mix_marker(key), stats.to_json(), options)
        return stats

    def _write_rejects(self, key: str, rows: np.ndarray, reasons: np.ndarray) -> None:
        options = self.spec.output.storage_options
        order = np.argsort(rows)
        rows, reasons = pa.array(rows[order]), pa.array(reasons[order].tolist(), pa.string())
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(storage.open_read(self.layout.annotated(key), options))
            writer = LazyParquetWriter(stack, self.layout.mix_rejects(key), options, cols.REJECTS_SCHEMA)
            for batch in pq.ParquetFile(source).iter_batches(
                batch_size=self.spec.input.batch_rows, columns=cols.BASE_SCHEMA.names
            ):
                docs = pa.Table.from_batches([batch])
                picked = docs.filter(pc.is_in(docs.column(cols.ROW), value_set=rows))
                if picked.num_rows:
                    labels = reasons.take(pc.index_in(picked.column(cols.ROW), value_set=rows))
                    writer.write(cols.with_rejection(picked, STAGE_NAME, labels))


def run_mix(
    spec: JobSpec, tokenize_stats: list[TokenizeMarker], progress: Progress, max_workers: int
) -> tuple[dict[str, Any], list[SampleMarker]]:
    """The mixture plan (rates, realized tokens, output shard count) and per-shard sampling stats."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    unit = spec.mix_unit
    available: dict[str, int] = {}
    histograms: dict[str, np.ndarray] = {}
    for shard in tokenize_stats:
        for domain, counts in shard.domains.items():
            available[domain] = available.get(domain, 0) + counts["mix_size"]
            histogram = np.asarray(counts["histogram"], dtype=np.int64)
            histograms[domain] = histograms[domain] + histogram if domain in histograms else histogram
    synthetic = {spec.generate.domain} if spec.generate is not None else set()
    plan = plan_mixture(spec.stages.mix, available, unit, synthetic)
    for note in plan.notes:
        progress.log(f"mix: {note}")
    if not spec.stages.mix.rehydration:
        # (with rehydration a document's copies follow its own rate, which the histogram of
        # its domain cannot fine-tune: the realized amounts then meet the targets in expectation)
        plan.rates = {d: effective_rate(r, plan.available[d], histograms[d]) for d, r in plan.rates.items()}
    shards = [
        {"key": s.shard_key, "tokenized": s.config_hash} for s in sorted(tokenize_stats, key=lambda s: s.shard_key)
    ]
    plan_hash = short_hash({"format": MIX_FORMAT, "plan": plan.to_json(), "shards": shards})
    rates_json = json.dumps(plan.rates, sort_keys=True)
    finished: dict[str, SampleMarker] = {}
    items = []
    for shard in shards:
        config_hash = short_hash(
            {"plan": plan_hash, "tokenized": shard["tokenized"], "write_rejects": spec.output.write_rejects}
        )
        stats = committed(SampleMarker, layout.mix_marker(shard["key"]), options, config_hash)
        if stats is not None:
            finished[shard["key"]] = stats
        else:
            items.append({"key": shard["key"], "config_hash": config_hash, "rates": rates_json})
    progress.start("mix", total=len(shards), unit="shard", skipped=len(finished))
    for stats in run_shard_tasks(ShardSampler, spec, items, max_workers):
        finished[stats.shard_key] = stats
        progress.advance(1, docs=stats.kept_docs, nbytes=stats.kept_bytes)
    sample_stats = [finished[s["key"]] for s in shards]
    realized: dict[str, dict[str, int]] = {}
    for stats in sample_stats:
        for domain, counts in stats.domains.items():
            into = realized.setdefault(domain, {"docs": 0, "copies": 0, "tokens": 0, "bytes": 0})
            for k, v in counts.items():
                into[k] = into.get(k, 0) + v
    total_tokens = sum(s.tokens for s in sample_stats)
    total_bytes = sum(s.copy_bytes for s in sample_stats)
    if unit == "tokens":
        num_output_shards = max(1, math.ceil(total_tokens / spec.stages.pack.shard_tokens))
    else:
        num_output_shards = max(1, math.ceil(total_bytes / spec.output.documents.shard_bytes))
    boundaries = shard_boundaries(plan.rates, histograms, num_output_shards)
    plan_doc = {
        "hash": plan_hash,
        **plan.to_json(),
        "realized": realized,
        "total_tokens": total_tokens,
        "total_bytes": total_bytes,
        "total_copies": sum(s.copies for s in sample_stats),
        "num_output_shards": num_output_shards,
        "shard_boundaries": boundaries.tolist(),
        "max_epochs": spec.stages.mix.max_epochs,
        "rehydration_levels": spec.stages.mix.rehydration_levels() if spec.stages.mix.rehydration else [1.0],
        "shards": shards,
    }
    storage.write_json(layout.mix_plan, plan_doc, options)
    return plan_doc, sample_stats
