"""Phase 1, annotate: one work unit per input shard.

Each shard is read in row batches, validated, and passed through the document stages.
Kept rows go to ``work/annotate/<key>.parquet``, rejects to ``rejects/annotate/``,
quarantined rows to ``quarantine/``; a marker with the shard's counts is written last,
so a shard with a marker is finished and a re-run skips it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import columns as cols
from pipeline.core import sketch, storage
from pipeline.core.hashing import mix64, short_hash
from pipeline.core.layout import OutputLayout, shard_key
from pipeline.core.markers import AnnotateMarker
from pipeline.core.parquet_io import LazyParquetWriter
from pipeline.core.progress import Progress, plural
from pipeline.core.sketch import LENGTH_GAMMA
from pipeline.phases.annotate.chat import conversations_after_stages
from pipeline.phases.annotate.readers import file_kind, open_source
from pipeline.phases.annotate.validation import InputValidation, ShardRejected, settings_for_hash
from pipeline.phases.examples import ExampleSampler, hidden_texts
from pipeline.phases.shard_tasks import ShardWorker, UnitFailed, run_shard_tasks
from pipeline.stages.registry import document_stages


@dataclass(frozen=True)
class InputShard:
    """A unit of annotate work: a whole input file, or rows ``[start, end)`` of a large one."""

    uri: str
    key: str
    fingerprint: dict[str, Any]
    rows: tuple[int, int] | None = None
    byte_range: tuple[int, int] | None = None


def discover_shards(spec: JobSpec) -> list[InputShard]:
    """The input's files, each one work unit, except large ones: Parquet files of more than
    ``input.unit_rows`` rows become consecutive row ranges, keyed ``<shard key>.r<first row>``,
    and uncompressed JSON lines files of more than ``input.unit_bytes`` become byte ranges,
    keyed ``<shard key>.b<first byte>`` (zero-padded: units sort in file order; a key names
    files and a Hive partition of the dedup removals, so letters, digits, . _ - only)."""
    options = spec.input.storage_options
    uris = storage.list_files(spec.input.uri, options)
    infos = [storage.file_info(uri, options) for uri in uris]
    with ThreadPoolExecutor(max_workers=16) as pool:  # one footer or head read per large file, on S3 a request each
        sizes = list(pool.map(lambda uri_info: _split_size(spec, *uri_info), zip(uris, infos)))
    units = []
    for uri, info, (kind, size) in zip(uris, infos, sizes):
        key = shard_key(spec.input.uri, uri)
        limit = spec.input.unit_rows if kind == "rows" else spec.input.unit_bytes
        if kind is None or size <= limit:
            units.append(InputShard(uri, key, info))
            continue
        parts = -(-size // limit)
        bounds = [size * i // parts for i in range(parts + 1)]
        for a, b in zip(bounds, bounds[1:]):
            if kind == "rows":
                units.append(InputShard(uri, f"{key}.r{a:012d}", info, rows=(a, b)))
            else:
                units.append(InputShard(uri, f"{key}.b{a:015d}", info, byte_range=(a, b)))
    return units


def _split_size(spec: JobSpec, uri: str, info: dict[str, Any]) -> tuple[str | None, int]:
    """``("rows", row count)`` of a Parquet file, ``("bytes", size)`` of an uncompressed JSON
    lines file, when it may need splitting; ``(None, 0)`` for a file too small to split or
    one that cannot be read (annotate then quarantines it as a whole)."""
    size = int(info["size"])
    if size <= min(spec.input.unit_rows, spec.input.unit_bytes):
        return None, 0
    try:
        with storage.open_read(uri, spec.input.storage_options) as f:
            head = f.read(64)
            kind = file_kind(head, uri, spec.input.format)
            if kind == "parquet":
                f.seek(0)
                return "rows", pq.ParquetFile(f).metadata.num_rows
            if kind == "jsonl" and not head.lstrip().startswith(b"["):  # uncompressed lines: entered at any byte
                return "bytes", size
    except (pa.ArrowException, OSError):
        pass
    return None, 0


# Bump when the columns annotate writes change, so that older annotated shards are redone.
ANNOTATION_FORMAT = 3


# Input settings that do not change what annotate writes (a unit's row range is in its key;
# input columns are carried only for document outputs).
_NOT_IN_WORK_HASHES = {"storage_options", "max_unreadable_shards", "unit_rows", "unit_bytes", "carry_columns"}


def carries_columns(spec: JobSpec) -> bool:
    """Input columns go through annotate only for a document output: a token output never
    reads them."""
    return spec.output.writes_documents and spec.input.carry_columns != "none"


def annotate_config_hash(spec: JobSpec) -> str:
    """What annotated shards depend on: input reading and the annotate-phase stages."""
    payload = {
        "format": ANNOTATION_FORMAT,
        "input": settings_for_hash(spec.input, _NOT_IN_WORK_HASHES),
        "stages": spec.capability_settings(),
        "write_rejects": spec.output.write_rejects,
        "models": spec.model_fingerprints(exclude=("stages.tokenize.model",)),
    }
    if spec.output.writes_documents:  # carried input columns; stages' values for document outputs
        payload["documents"] = {"carry_columns": spec.input.carry_columns}
    return short_hash(payload)


def _node_id() -> str | None:
    """The Ray node this shard was annotated on (for the marker; shows where work ran)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


def _count(counter: dict[str, int], key: str, n: int) -> None:
    if n:
        counter[key] = counter.get(key, 0) + n


def _add_counts(counter: dict[str, int], counts: dict[str, int]) -> None:
    for key, n in counts.items():
        _count(counter, key, n)


INPUT_TOKENS_SAMPLE = 16
"""The report's token lengths of the input: one valid document in this many is tokenized in
annotate, chosen by a hash of its row, its shard and the job's seed (the tokenize phase counts
every kept document's tokens)."""


class ShardAnnotator(ShardWorker):
    """Runs the annotate phase on one shard with stages set up once per worker."""

    phase = "annotate"
    marker = AnnotateMarker

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.layout = OutputLayout(spec.output.uri)
        self.config_hash = annotate_config_hash(spec)  # reads model files' metadata: once per worker
        self.validation = InputValidation(
            spec.input if carries_columns(spec) else spec.input.model_copy(update={"carry_columns": "none"})
        )
        self.stages = document_stages(spec)
        for stage in self.stages:
            stage.setup()
        self._stage_named = {stage.name: stage for stage in self.stages}
        self._added: dict[str, list[str]] = {}
        """Per stage, the columns it added: what the report's examples of its rejects show."""
        self.sample_tokenizer = None
        if spec.output.writes_tokens and spec.input.chat is None:
            from pipeline.phases.tokenize.tokenizer import Tokenize

            self.sample_tokenizer = Tokenize(spec.stages.tokenize)
            self.sample_tokenizer.setup()

    def run(self, item: dict[str, Any]) -> AnnotateMarker:
        rows = tuple(item["rows"]) if item.get("rows") else None
        byte_range = tuple(item["byte_range"]) if item.get("byte_range") else None
        return self.annotate(InputShard(item["uri"], item["key"], json.loads(item["fingerprint"]), rows, byte_range))

    def annotate(self, shard: InputShard) -> AnnotateMarker:
        started = time.perf_counter()
        stats = AnnotateMarker(
            shard_key=shard.key,
            uri=shard.uri,
            fingerprint=shard.fingerprint,
            config_hash=self.config_hash,
            node=_node_id(),
            rows=list(shard.rows) if shard.rows else None,
            byte_range=list(shard.byte_range) if shard.byte_range else None,
            worker_pid=os.getpid(),
            started_at=round(time.time(), 3),
        )
        options = self.spec.output.storage_options
        for stage in self.stages:  # a shard that failed earlier in this worker leaves nothing behind
            stage.take_stats()
        for stale in (
            self.layout.annotated(shard.key),
            self.layout.annotate_rejects(shard.key),
            self.layout.quarantine(shard.key),
        ):
            storage.remove_tree(stale, options)
        try:
            self._annotate(shard, stats)
        except ShardRejected as problem:
            if self.spec.input.on_bad_shard == "fail":
                raise UnitFailed(
                    f"input shard {shard.uri} cannot be read: {problem}. input.on_bad_shard is 'fail'; "
                    "fix or remove the file (committed work is kept), or set it to 'quarantine'"
                ) from None
            self._quarantine_shard(shard, stats, problem)
        stats.seconds = round(time.perf_counter() - started, 3)
        storage.write_json(self.layout.annotate_marker(shard.key), stats.to_json(), self.spec.output.storage_options)
        storage.remove_tree(self.layout.annotate_progress(shard.key), self.spec.output.storage_options)
        return stats

    def _annotate(self, shard: InputShard, stats: AnnotateMarker) -> None:
        out_options = self.spec.output.storage_options
        source = open_source(
            shard.uri,
            shard.key,
            self.spec.input.storage_options,
            self.validation,
            self.spec.input.batch_rows,
            shard.rows,
            shard.byte_range,
        )
        counts = {"input_docs": 0, "input_bytes": 0, "annotated_docs": 0, "annotated_bytes": 0}
        examples = ExampleSampler(self.spec.seed, shard.key)
        rejected: dict[str, dict[str, int]] = {}
        quarantined: dict[str, int] = {}
        kept_counts: dict[str, dict[str, int]] = {stage.name: {} for stage in self.stages}
        with source, contextlib.ExitStack() as stack:
            annotated = LazyParquetWriter(stack, self.layout.annotated(shard.key), out_options)
            rejects = LazyParquetWriter(
                stack, self.layout.annotate_rejects(shard.key), out_options, cols.REJECTS_SCHEMA
            )
            quarantine = LazyParquetWriter(
                stack, self.layout.quarantine(shard.key), out_options, cols.QUARANTINE_SCHEMA
            )
            timer = _StepTimer(stats.step_seconds)
            reported = None
            for batch in timer.timed_iter("read", source.batches()):
                raw = batch.raw
                counts["input_docs"] += raw.num_rows + batch.bad.num_rows
                counts["input_bytes"] += int(
                    pc.sum(pc.binary_length(raw.column(self.spec.input.text_column))).as_py() or 0
                )
                with timer.step("validate"):
                    result = self.validation.validate(raw, shard.uri, shard.key, batch.rows)
                sketch.add_counts(
                    stats.length_buckets.setdefault("chars", {}),
                    pc.utf8_length(result.docs.column(cols.TEXT)).to_numpy(zero_copy_only=False).astype(np.float64),
                    LENGTH_GAMMA,
                )
                if self.sample_tokenizer is not None:
                    with timer.step("tokens_sample"):
                        self._sample_tokens(result.docs, shard.key, stats.length_buckets)
                docs, batch_rejects = self._run_stages(result.docs, [result.rejected], timer)
                if self.spec.input.chat is not None:
                    with timer.step("validate"):
                        docs, broken = conversations_after_stages(docs)
                    batch_rejects.append(broken)
                with timer.step("write"):
                    annotated.write(self._with_carried(docs, raw, batch.rows))
                for stage in self.stages:
                    _add_counts(kept_counts[stage.name], stage.count_kept(docs))
                counts["annotated_docs"] += docs.num_rows
                counts["annotated_bytes"] += int(pc.sum(docs.column(cols.TEXT_BYTES)).as_py() or 0)
                for table in batch_rejects:
                    if table.num_rows:
                        for (stage, reason), n in _group_counts(table).items():
                            _count(rejected.setdefault(stage, {}), reason, n)
                        name = table.column(cols.REJECT_STAGE)[0].as_py()
                        stage = self._stage_named.get(name)
                        examples.offer(
                            table,
                            self._added.get(name, []),
                            with_text=stage.example_text if stage else True,
                            hidden=hidden_texts(self.stages, table),
                        )
                        if self.spec.output.write_rejects:
                            with timer.step("write"):
                                rejects.write(table)
                for bad in (result.quarantined, batch.bad):
                    if bad.num_rows:
                        with timer.step("write"):
                            quarantine.write(bad)
                        for reason, n in _value_counts(bad.column(cols.QUARANTINE_REASON)).items():
                            _count(quarantined, reason, n)
                if reported is None or time.monotonic() - reported >= PROGRESS_EVERY_S:
                    # how far this unit has read, for the driver's heartbeat: after its first batch,
                    # then every few seconds (a small object on S3)
                    progress = {"docs": counts["input_docs"]}
                    storage.write_json(self.layout.annotate_progress(shard.key), progress, out_options)
                    reported = time.monotonic()
            if annotated.writer is None:
                empty, _ = self._run_stages(self.validation.empty_documents(), [])
                annotated.write(empty)
        stats.carried_fields = source.carried_fields
        stats.input_docs, stats.input_bytes = counts["input_docs"], counts["input_bytes"]
        stats.annotated_docs, stats.annotated_bytes = counts["annotated_docs"], counts["annotated_bytes"]
        stats.rejected, stats.quarantined = rejected, quarantined
        stats.kept_counts = {name: counter for name, counter in kept_counts.items() if counter}
        stats.examples = examples.to_json(self.stages)
        for stage in self.stages:
            taken = stage.take_stats()
            if taken is not None:
                stats.stage_stats[stage.name] = _jsonable(taken)

    def _sample_tokens(self, docs: pa.Table, key: str, buckets: dict[str, dict[int, int]]) -> None:
        """Token lengths of the seeded sample of valid documents (``INPUT_TOKENS_SAMPLE``)."""
        if not docs.num_rows:
            return
        salt = np.uint64(int(short_hash([self.spec.seed, key]), 16))
        rows = docs.column(cols.ROW).to_numpy().astype(np.uint64)
        picked = mix64(rows ^ salt) % np.uint64(INPUT_TOKENS_SAMPLE) == 0
        if picked.any():
            texts = docs.column(cols.TEXT).filter(pa.array(picked)).to_pylist()
            lengths = np.array([len(ids) for ids in self.sample_tokenizer.encode(texts)], np.float64)
            sketch.add_counts(buckets.setdefault("tokens_sample", {}), lengths, LENGTH_GAMMA)

    def _with_carried(self, docs: pa.Table, raw: pa.Table, rows: pa.Array) -> pa.Table:
        """The kept documents with the input columns carried for document outputs (joined by
        row, after the stages, so that no stage sees them)."""
        named = set(self.validation.named_columns)
        carried = [name for name in raw.column_names if name not in named]
        if not carried:
            return docs
        take = pc.index_in(docs.column(cols.ROW), value_set=rows)
        taken = set(docs.column_names)
        for name in carried:
            docs = docs.append_column(cols.carried_name(name, taken), raw.column(name).take(take))
        return docs

    def _run_stages(
        self, docs: pa.Table, rejects: list[pa.Table], timer: _StepTimer | None = None
    ) -> tuple[pa.Table, list[pa.Table]]:
        for stage in self.stages:
            before = set(docs.column_names)
            with timer.step(stage.name) if timer else contextlib.nullcontext():
                docs, stage_rejects = stage(docs)
            rejects.append(stage_rejects)
            self._added[stage.name] = [
                c for c in docs.column_names if c not in before and c not in stage.internal_columns
            ]
        return docs, rejects

    def _quarantine_shard(self, shard: InputShard, stats: AnnotateMarker, problem: ShardRejected) -> None:
        record = pa.table(
            {
                cols.SOURCE_URI: [shard.uri],
                cols.SHARD: [shard.key],
                cols.ROW: pa.nulls(1, pa.int64()),
                cols.ID: pa.nulls(1, pa.string()),
                cols.TEXT_BYTES: pa.nulls(1, pa.int64()),
                cols.QUARANTINE_REASON: [problem.reason],
                cols.QUARANTINE_DETAIL: [problem.detail],
            },
            schema=cols.QUARANTINE_SCHEMA,
        )
        with storage.atomic_writer(self.layout.quarantine(shard.key), self.spec.output.storage_options) as sink:
            pq.write_table(record, sink)
        docs = problem.num_rows or 0
        stats.input_docs, stats.input_bytes, stats.annotated_docs, stats.annotated_bytes = docs, 0, 0, 0
        stats.rejected, stats.quarantined = {}, {problem.reason: docs} if docs else {}
        stats.shard_quarantined = {"reason": problem.reason, "detail": problem.detail, "documents": problem.num_rows}
        stats.kept_counts, stats.stage_stats, stats.examples, stats.length_buckets = {}, {}, {}, {}


PROGRESS_EVERY_S = 3.0


def _documents_read(layout: OutputLayout, running: set[str], options: storage.StorageOptions) -> str:
    """The heartbeat's addition: documents the unfinished units have read so far."""
    docs = 0
    for uri in storage.list_files(layout.annotate_progress_dir, options, suffix=".json"):
        key = uri.rsplit("/", 1)[-1][: -len(".json")]
        if key in running:
            with contextlib.suppress(FileNotFoundError, ValueError):  # a unit that just finished
                docs += int(storage.read_json(uri, options)["docs"])
    return f"{docs:,} documents read by the units running" if docs else ""


class _StepTimer:
    """Adds each step's wall-clock seconds in this worker into ``seconds``, by step name."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    @contextlib.contextmanager
    def step(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 6)

    def timed_iter(self, name: str, items):
        iterator = iter(items)
        while True:
            with self.step(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item


def _value_counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    return {item["values"]: item["counts"] for item in pc.value_counts(column).to_pylist()}


def _group_counts(rejects: pa.Table) -> dict[tuple[str, str], int]:
    grouped = rejects.group_by([cols.REJECT_STAGE, cols.REJECT_REASON]).aggregate([(cols.ROW, "count")])
    return {(row[cols.REJECT_STAGE], row[cols.REJECT_REASON]): row[f"{cols.ROW}_count"] for row in grouped.to_pylist()}


def run_annotate(spec: JobSpec, shards: list[InputShard], progress: Progress, max_workers: int) -> list[AnnotateMarker]:
    """Annotate every shard without a current marker; return every shard's marker."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    config_hash = annotate_config_hash(spec)
    finished: dict[str, AnnotateMarker] = {}
    todo: list[InputShard] = []
    for shard in shards:
        marker = layout.annotate_marker(shard.key)
        if storage.exists(marker, options):
            stats = AnnotateMarker.from_json(storage.read_json(marker, options))
            if stats.fingerprint == shard.fingerprint and stats.config_hash == config_hash:
                finished[shard.key] = stats
                continue
        todo.append(shard)
    running = {s.key for s in todo}
    progress.start(
        "annotate",
        total=len(shards),
        unit="shard",
        skipped=len(finished),
        probe=lambda: _documents_read(layout, running - finished.keys(), options),
    )
    split = len({s.uri for s in shards if s.rows or s.byte_range})
    if split:
        progress.log(
            f"annotate: {plural(split, 'large file')} split into {plural(len(shards), 'unit')} in all "
            "(input.unit_rows, input.unit_bytes)"
        )
    items = [
        {
            "uri": s.uri,
            "key": s.key,
            "fingerprint": json.dumps(s.fingerprint),
            "rows": s.rows,
            "byte_range": s.byte_range,
        }
        for s in todo
    ]
    for stats in run_shard_tasks(ShardAnnotator, spec, items, max_workers):
        finished[stats.shard_key] = stats
        progress.advance(1, docs=stats.input_docs, nbytes=stats.input_bytes)
    return [finished[shard.key] for shard in shards]
