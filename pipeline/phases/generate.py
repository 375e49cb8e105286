"""The generate phase of a generation job: rounds of requests to the LLM backend, fanned out
as Ray tasks, whose kept answers are written as the job's input records.

A round is committed like any unit of work: its records file (``generated/round-NNNNN.parquet``,
OpenAI chat messages or text documents, plus a ``generation`` provenance struct), then its
marker. A re-run
skips committed rounds and takes every request a killed round had answered from the round's
cache (``work/generate/cache/``), so it sends only what was never answered.
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import JobSpec
from pipeline.core import storage
from pipeline.core.hashing import short_hash
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import GenerateMarker, SentBatch
from pipeline.core.progress import Progress
from pipeline.generation.cache import ResponseCache
from pipeline.generation.client import BackendError, BackendStats, ChatRequest, ChatResponse, OpenAIBackend
from pipeline.generation.config import produces_documents
from pipeline.generation.methods import build_method as _build_method
from pipeline.phases.shard_tasks import ShardWorker, UnitFailed, run_shard_tasks

GENERATION_STRUCT = pa.struct(
    [
        ("method", pa.string()),
        ("generator", pa.string()),
        ("endpoint_kind", pa.string()),
        ("templates", pa.list_(pa.struct([("template", pa.string()), ("template_sha256", pa.string())]))),
        ("sampling", pa.string()),
        ("seed", pa.int64()),
        ("round", pa.int32()),
        ("instruction", pa.string()),
        ("parents", pa.list_(pa.string())),
        ("completion_tokens", pa.int64()),
        ("score", pa.float64()),
        ("judge", pa.string()),
        ("operation", pa.string()),
    ]
)
RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("generation", GENERATION_STRUCT),
    ]
)
"""Conversations (OpenAI chat messages), each with its provenance."""
DOCUMENT_RECORD_SCHEMA = pa.schema(
    [("id", pa.string()), ("domain", pa.string()), ("text", pa.string()), ("generation", GENERATION_STRUCT)]
)
"""Text documents (``documents`` with ``produce: documents``); a kept source document has no
provenance (``generation`` null)."""


class GenerationBudgetError(RuntimeError):
    """The job could need more requests than ``generate.max_requests``."""


def build_method(spec: JobSpec):
    return _build_method(spec.generate, spec.seed, spec.output.storage_options)


def plan_requests(spec: JobSpec, method: Any = None) -> dict[str, Any]:
    """What ``--dry-run`` prints: the most requests the job can send and roughly how many
    tokens (prompts estimated at 4 characters a token from the first round's prompts)."""
    method = method or build_method(spec)
    most = method.max_requests()
    first = method.first_requests()
    prompt_tokens = sum(r.estimated_tokens() - int(r.sampling["max_tokens"]) for r in first) / max(1, len(first))
    completion = spec.generate.sampling.max_tokens
    return {
        "method": spec.generate.method,
        "max_requests": most,
        "limit": spec.generate.max_requests,
        "prompt_tokens_per_request": round(prompt_tokens),
        "max_tokens_per_request": completion,
        "max_tokens_total": round(most * (prompt_tokens + completion)),
    }


def check_budget(spec: JobSpec, method: Any = None) -> None:
    method = method or build_method(spec)
    most = method.max_requests()
    if most > spec.generate.max_requests:
        raise GenerationBudgetError(
            f"generate.max_requests: this job could send up to {most:,} requests ({method.budget_formula()}), more "
            f"than max_requests ({spec.generate.max_requests:,}); raise max_requests or lower the method's rounds "
            "or target"
        )


class RequestSender(ShardWorker):
    """Sends one batch of a round's requests, through the round's cache."""

    phase = "generate"
    marker = SentBatch

    def run(self, item: dict[str, Any]) -> SentBatch:
        import uuid

        config = self.spec.generate
        # a retried task writes new cache segments beside the failed attempt's, never over them
        cache = ResponseCache(
            item["cache"], self.spec.output.storage_options, writer=f"{item['key']}-{uuid.uuid4().hex[:8]}"
        )
        backend = OpenAIBackend(config.backend_for(item["role"]), share=item["share"], cache=cache)
        requests = [ChatRequest(tuple(r["messages"]), r["sampling"], r["seed"], r["context"]) for r in item["requests"]]
        try:
            responses = backend.complete(requests)
        except BackendError as exc:  # the endpoint refuses the job: one clear line, not a traceback
            raise UnitFailed(str(exc)) from None
        return SentBatch(
            key=item["key"],
            role=item["role"],
            responses=[r.to_json() for r in responses],
            stats=backend.stats.to_json(),
        )


class Sender:
    """``send(requests, role)`` for a method: the requests split over Ray tasks, sent to the
    role's backend (``GenerateConfig.backends``); answers in order."""

    def __init__(
        self,
        spec: JobSpec,
        round_number: int,
        workers: int,
        progress: Progress,
        next_start: dict[str, float] | None = None,
    ) -> None:
        self.spec = spec
        self.round = round_number
        self.workers = spec.generate.workers or workers
        self.cache = OutputLayout(spec.output.uri).generate_cache(round_number)
        self.progress = progress
        self.stats = BackendStats()
        self.by_role: dict[str, BackendStats] = {}
        self.calls = 0
        # per role, when the next step may start: shared by the rounds of a run (run_generate)
        self.next_start: dict[str, float] = {} if next_start is None else next_start

    def __call__(self, requests: list[ChatRequest], role: str = "generator") -> list[ChatResponse]:
        if not requests:  # e.g. answers for a round whose every evolution was eliminated
            return []
        if role not in self.spec.generate.backends():
            role = "generator"
        self.calls += 1
        tasks = max(1, min(self.workers, len(requests)))
        size = math.ceil(len(requests) / tasks)
        items = [
            {
                "key": f"round-{self.round:05d}-step{self.calls}-{i:04d}",
                "cache": self.cache,
                "share": tasks,
                "role": role,
                "requests": [
                    {"messages": list(r.messages), "sampling": r.sampling, "seed": r.seed, "context": r.context}
                    for r in requests[start : start + size]
                ],
            }
            for i, start in enumerate(range(0, len(requests), size))
        ]
        # Each task's limiter starts afresh, so the limit also spaces the steps: a step starts
        # once the one before it would have sent its requests and tokens at the limit.
        waited = max(0.0, self.next_start.get(role, 0.0) - time.monotonic())
        time.sleep(waited)
        started = time.monotonic()
        answers: dict[str, SentBatch] = {}
        step = BackendStats(rate_limit_wait_s=waited)
        for batch in run_shard_tasks(RequestSender, self.spec, items, tasks):
            answers[batch.key] = batch
            step.merge(BackendStats(**batch.stats))
        self.stats.merge(step)
        self.by_role.setdefault(role, BackendStats()).merge(step)
        limit = self.spec.generate.backend_for(role).rate_limit
        spans = [0.0]
        if limit.requests_per_s:
            spans.append(step.sent / limit.requests_per_s)
        if limit.tokens_per_min:
            spans.append((step.prompt_tokens + step.completion_tokens) / (limit.tokens_per_min / 60))
        self.next_start[role] = started + max(spans)
        return [ChatResponse.from_json(r) for item in items for r in answers[item["key"]].responses]


def _records_table(spec: JobSpec, method: Any, records: list[dict[str, Any]]) -> pa.Table:
    generate = spec.generate
    provenance = {
        "method": method.method,
        "generator": generate.backend.model,
        "endpoint_kind": generate.backend.kind,
        "templates": [t.provenance() for t in method.templates()],
        "sampling": json.dumps(generate.sampling.request_fields(), sort_keys=True),
        "seed": spec.seed,
        "judge": generate.backend_for("judge").model if generate.method == "judge" else None,
    }
    text = produces_documents(generate)
    rows = []
    for r in records:
        row = {"id": r["id"], "domain": r.get("domain", generate.domain)}
        row["text" if text else "messages"] = r["text" if text else "messages"]
        row["generation"] = (
            None
            if "round" not in r  # a source document kept beside its rewrites
            else {
                **provenance,
                "instruction": r["instruction"],
                "round": r["round"],
                "parents": r["parents"],
                "completion_tokens": r["completion_tokens"],
                "score": r.get("score"),
                "operation": r.get("operation"),
            }
        )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=DOCUMENT_RECORD_SCHEMA if text else RECORD_SCHEMA)


def _round_records(uri: str, options: storage.StorageOptions) -> list[dict[str, Any]]:
    """A committed round's records, in the shape its method made them."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri, options)))
    return [
        {
            "id": row["id"],
            "instruction": row["generation"]["instruction"],
            "messages": row.get("messages"),
            "text": row.get("text"),
            "parents": row["generation"]["parents"],
            "round": row["generation"]["round"],
            "completion_tokens": row["generation"]["completion_tokens"],
            "score": row["generation"]["score"],
            "operation": row["generation"].get("operation"),
        }
        for row in table.to_pylist()
        if row["generation"] is not None
    ]


def generation_hash(spec: JobSpec) -> str:
    """What a round's output depends on: the method, backend model, sampling and seed (not the
    endpoint's address, concurrency or limits)."""
    generate = spec.generate.model_dump(mode="json")
    backend = generate.pop("backend")
    for key in ("max_requests", "workers", "dedup_on"):  # how the records are filtered, not made
        generate.pop(key)
    if generate.get("judge") and generate["judge"].get("backend"):
        judge = generate["judge"].pop("backend")
        generate["judge"]["backend"] = {"model": judge["model"], "kind": judge["kind"]}
    return short_hash({"generate": generate, "model": backend["model"], "kind": backend["kind"], "seed": spec.seed})


def run_generate(spec: JobSpec, progress: Progress, workers: int) -> list[GenerateMarker]:
    """Runs rounds until the method is done or out of rounds; returns every round's marker."""
    layout = OutputLayout(spec.output.uri)
    options = spec.output.storage_options
    method = build_method(spec)
    check_budget(spec, method)
    config_hash = generation_hash(spec)
    markers: list[GenerateMarker] = []
    rounds = method.max_rounds()
    progress.start("generate", total=rounds, unit="round")
    checked = False
    next_start: dict[str, float] = {}  # the rate limit spans rounds as well as steps
    for round_number in range(1, rounds + 1):
        if method.done():
            break
        marker_uri = layout.generate_marker(round_number)
        if storage.exists(marker_uri, options):
            marker = GenerateMarker.from_json(storage.read_json(marker_uri, options))
            if marker.config_hash == config_hash:
                method.remember(_round_records(layout.generated_round(round_number), options))
                markers.append(marker)
                progress.advance(1, docs=0)
                continue
        if not checked:  # before the first request: an unreachable endpoint fails here, naming it
            for backend_config in spec.generate.backends().values():
                OpenAIBackend(backend_config).check()
            checked = True
        started = time.perf_counter()
        sender = Sender(spec, round_number, workers, progress, next_start)
        result = method.round(round_number, sender)
        table = _records_table(spec, method, result.records)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        storage.write_bytes(layout.generated_round(round_number), sink.getvalue(), options)
        marker = GenerateMarker(
            round=round_number,
            config_hash=config_hash,
            method=method.method,
            records=len(result.records) - result.sources,
            source_records=result.sources,
            candidates=result.candidates,
            rejected=result.rejected,
            requests=sender.stats.to_json(),
            backends={role: stats.to_json() for role, stats in sorted(sender.by_role.items())},
            completion_tokens=sum(r.get("completion_tokens", 0) for r in result.records),
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json(marker_uri, marker.to_json(), options)
        markers.append(marker)
        progress.advance(1, docs=marker.records + marker.source_records)
        progress.log(
            f"generate: round {round_number}: {marker.records} records kept of {marker.candidates} candidates, "
            f"{sender.stats.requests} requests ({sender.stats.cache_hits} from the cache)"
        )
    shortfall = method.shortfall()
    if shortfall:
        progress.log(f"generate: {shortfall}; the job goes on with the records it has")
    return markers
