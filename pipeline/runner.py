"""Runs a job: (generate →) annotate → dedup → tokenize (or prepare) → mix → pack → report → manifest →
latest.json,
on local Ray or a cluster.

The same code path serves both: locally Ray starts in-process sized to the machine;
with an address it connects to an existing cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pipeline.config import JobSpec, RayConfig, load_job_spec
from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import AnnotateMarker, RunRecord
from pipeline.core.progress import Progress
from pipeline.phases.annotate.phase import discover_shards, run_annotate
from pipeline.phases.dedup import run_dedup
from pipeline.phases.generate import run_generate
from pipeline.phases.mix.phase import run_mix
from pipeline.phases.pack.phase import run_pack
from pipeline.phases.publish import (
    latest_snapshot,
    move_into_snapshot,
    publish_latest,
    remove_stale_shards,
    write_manifest,
)
from pipeline.phases.tokenize.phase import phase_name, run_tokenize
from pipeline.report import build_report, check_balance, render_markdown, unreadable_summary
from pipeline.report_page import write_report
from pipeline.stages.registry import enabled


class InputError(RuntimeError):
    """The input cannot produce any documents."""


@dataclass
class RunResult:
    output_uri: str
    manifest_uri: str
    report_uri: str
    report: dict[str, Any]
    snapshot: str
    page_uri: str | None
    """``report.html``: the report with charts (None with ``report.charts: false``)."""


_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _quiet_auth_default(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


class ClusterUnreachable(RuntimeError):
    """The Ray cluster a run was told to join does not answer."""


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, in one line, when nothing listens at a cluster address (``host:port``
    of the head's GCS, or ``ray://host:port``); Ray itself would retry for minutes. ``auto``
    is Ray's to resolve."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}). Is its head running "
            "(`ray start --head` prints the address)? Check ray.address or --address; unset both to "
            "run on a local Ray"
        ) from None


def ensure_ray(config: RayConfig, address: str | None = None) -> None:
    import ray
    import ray.data
    from ray.data.context import ShuffleStrategy

    if not ray.is_initialized():
        # Inside a Ray job (`refinery submit`, `ray job submit`) RAY_ADDRESS names the job's cluster: join it.
        # An http:// one names a dashboard, for Ray's job CLI and `refinery status`; ray.init would read it
        # as a Ray Client address, so it is hidden from ray.init.
        from_env = os.environ.get("RAY_ADDRESS", "")
        dashboard = from_env.startswith(("http://", "https://"))
        address = address or config.address or (None if dashboard else from_env or None)
        kwargs: dict[str, Any] = {"address": address}
        if address:
            _check_reachable(address)
        if not address:
            kwargs = {"num_cpus": config.num_cpus or os.cpu_count(), "include_dashboard": False}
            if config.object_store_memory_mb:
                kwargs["object_store_memory"] = config.object_store_memory_mb * 1024 * 1024
            # Ray's default for a new local cluster is token authentication (other users of
            # the machine cannot run code on it); Refinery keeps it, without Ray's warning
            # that it chose it. RAY_AUTH_MODE=disabled in the environment opts out.
            logging.getLogger(_RAY_AUTH_LOGGER).addFilter(_quiet_auth_default)
        if dashboard:
            del os.environ["RAY_ADDRESS"]
        # ray.init replaces the SIGTERM handler with one that prints a C++ stack and exits;
        # the caller's (refinery run: stop cleanly, exit 143) is put back.
        on_main_thread = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if on_main_thread else None
        try:
            ray.init(logging_level=logging.WARNING, **kwargs)
        finally:
            if dashboard:
                os.environ["RAY_ADDRESS"] = from_env
            if on_main_thread and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = config.progress_bars
    context.shuffle_strategy = ShuffleStrategy(config.shuffle_strategy)
    logging.getLogger("ray.data").setLevel(logging.INFO if config.progress_bars else logging.WARNING)
    # Two of Ray Data's once-per-process warnings are false alarms here. "Progress bars
    # disabled": Refinery prints its own progress lines instead. "No available CPUs, the job
    # will hang": checked when an execution starts, while the cluster's resource view still
    # counts the tasks of the execution that just finished (it lags by about 50 ms), so it
    # fired on healthy runs between dedup's back-to-back executions; a stalled phase shows in
    # Refinery's progress lines.
    from ray.util.debug import log_once

    log_once("cpu_warning")
    if not config.progress_bars:
        log_once("ray_data_progress_manager_disabled")


class PeakMemory:
    """Samples the RSS of this process and its descendants (local Ray workers included)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self.peak_total = 0  # of the sum over processes (counts shared object-store pages once per process)
        # of any one process, without shared pages (Ray's object store is shared memory that every
        # worker which touched an object maps; it is bounded by ray.object_store_memory_mb)
        self.peak_private = 0
        self.since_mark = 0  # the peak of any one process since the last mark (the phase's)
        self.private_since_mark = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                info = process.memory_info()
            except psutil.Error:
                continue
            rss, private = info.rss, info.rss - getattr(info, "shared", 0)
            with self.lock:
                self.peak = max(self.peak, rss)
                self.since_mark = max(self.since_mark, rss)
                self.peak_private = max(self.peak_private, private)
                self.private_since_mark = max(self.private_since_mark, private)
            total += rss
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def mark(self) -> tuple[int, int]:
        """The peak RSS of any one process since the last mark, and the peak without shared
        pages; starts the next span."""
        self._sample()
        with self.lock:
            peak, self.since_mark = self.since_mark, 0
            private, self.private_since_mark = self.private_since_mark, 0
        return peak, private

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _phase(name: str, started: float, docs: int, progress: Progress, memory: PeakMemory) -> dict[str, Any]:
    """A phase's line in the report: the documents it covered, rates over the work done
    in this run only (None when an earlier run's committed work was all reused), and the
    peak RSS of any one process while it ran."""
    seconds = time.perf_counter() - started
    done = progress.processed.get(name, {"docs": 0, "bytes": 0})
    units = progress.units.get(name, {"total": 0, "reused": 0})
    all_reused = units["total"] > 0 and units["reused"] == units["total"]
    return {
        "name": name,
        "seconds": round(seconds, 3),
        "docs": docs,
        "docs_processed": done["docs"],
        "docs_per_s": None if all_reused else round(done["docs"] / seconds, 1) if seconds > 0 else 0.0,
        "mb_per_s": None if all_reused else round(done["bytes"] / seconds / 1e6, 3) if seconds > 0 else 0.0,
        **dict(zip(("peak_rss_bytes", "peak_private_bytes"), memory.mark())),
    }


def _check_unreadable(spec: JobSpec, annotate_stats: list[AnnotateMarker]) -> None:
    """Fail when more input shards were quarantined whole than ``input.max_unreadable_shards``
    allows, or all of them were: naming them, and what to do."""
    unreadable = [s for s in annotate_stats if s.shard_quarantined]
    limit = spec.input.max_unreadable_shards
    if not unreadable or (len(unreadable) <= limit and len(unreadable) < len(annotate_stats)):
        return
    listed = "; ".join(
        f"{s.uri}: {s.shard_quarantined['reason']}: {s.shard_quarantined['detail']}" for s in unreadable[:5]
    )
    more = f"; and {len(unreadable) - 5} more (report.json lists them)" if len(unreadable) > 5 else ""
    if len(unreadable) == len(annotate_stats):
        raise InputError(f"no input shard could be read ({len(unreadable)} of {len(unreadable)}): {listed}{more}")
    raise InputError(
        f"{len(unreadable)} of {len(annotate_stats)} input shards could not be read, more than "
        f"input.max_unreadable_shards ({limit}): {listed}{more}. Fix or remove them and run again (annotated "
        f"shards are kept), or set input.max_unreadable_shards: {len(unreadable)} to go on without them"
    )


def run_job(
    spec: JobSpec | str | Path | dict[str, Any],
    *,
    overrides: list[str] | None = None,
    address: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a job spec (object, YAML path or dict) to completion and return where its outputs are."""
    if not isinstance(spec, JobSpec):
        spec = load_job_spec(spec, overrides)
    progress = progress or Progress()
    try:
        return _run(spec, address, progress)
    finally:
        progress.close()


def _run(spec: JobSpec, address: str | None, progress: Progress) -> RunResult:
    layout = OutputLayout(spec.output.uri)
    out_options = spec.output.storage_options
    storage.check_writable(spec.output.uri, out_options)
    ensure_ray(spec.ray, address)
    import ray

    workers = spec.ray.max_parallel_tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
    phases: list[dict[str, Any]] = []
    with PeakMemory() as memory:
        generated = []
        if spec.generate is not None:
            started = time.perf_counter()
            generated = run_generate(spec, progress, workers)
            phases.append(_phase("generate", started, sum(m.records for m in generated), progress, memory))
        shards = discover_shards(spec)
        if not shards:
            raise InputError(f"no input files found at input.uri '{spec.input.uri}'")
        progress.log(f"job '{spec.name}': {len(shards)} input shards, output {spec.output.uri}")

        started = time.perf_counter()
        prepared = {cap.key: cap.prepare_job(spec, config, progress) for cap, config in enabled(spec)}
        annotate_stats = run_annotate(spec, shards, progress, workers)
        phases.append(_phase("annotate", started, sum(s.input_docs for s in annotate_stats), progress, memory))
        _check_unreadable(spec, annotate_stats)

        started = time.perf_counter()
        dedup_marker = run_dedup(spec, annotate_stats, progress)
        annotated_docs = sum(s.annotated_docs for s in annotate_stats)
        phases.append(_phase("dedup", started, annotated_docs, progress, memory))

        started = time.perf_counter()
        tokenize_stats = run_tokenize(spec, annotate_stats, dedup_marker, progress, workers)
        phases.append(
            _phase(phase_name(spec), started, sum(s.tokenized_docs for s in tokenize_stats), progress, memory)
        )

        started = time.perf_counter()
        plan, sample_stats = run_mix(spec, tokenize_stats, progress, workers)
        phases.append(_phase("mix", started, sum(s.tokenized_docs for s in tokenize_stats), progress, memory))

        started = time.perf_counter()
        snapshot, pack_stats = run_pack(spec, plan, annotate_stats, progress, workers)
        phases.append(_phase("pack", started, sum(s.documents for s in pack_stats), progress, memory))
        stale = remove_stale_shards(spec, snapshot, pack_stats)
        if stale:
            progress.log(
                f"removed {len(stale)} files that an earlier attempt left in snapshot {snapshot} "
                f"(such as {stale[0].rsplit('/', 1)[-1]})"
            )
        # Every unit of work is done: no writer is left that could own a temporary file.
        partial = storage.remove_partial_writes(spec.output.uri, out_options)
        if partial:
            progress.log(
                f"removed {len(partial)} partly written files that killed writers left "
                f"(such as {partial[0].rsplit('/', 1)[-1]})"
            )

    built = build_report(
        RunRecord(
            spec=spec,
            annotate=annotate_stats,
            dedup=dedup_marker,
            tokenize=tokenize_stats,
            sample=sample_stats,
            plan=plan,
            pack=pack_stats,
            phases=phases,
            peak_rss_bytes=memory.peak,
            peak_private_bytes=memory.peak_private,
            prepared=prepared,
            snapshot=snapshot,
            work_units=progress.units,
            generate=generated,
            previous_snapshot=latest_snapshot(spec),
        )
    )
    report = built.data
    for section in built.sections:
        if section.file:
            storage.write_json(layout.report_file(section.file), section.data, out_options)
    page_uri = write_report(layout, report, render_markdown(built), out_options, spec.report.charts)
    check_balance(report)
    move_into_snapshot(spec, snapshot, pack_stats, progress)
    warnings = report["mixture"]["warnings"]
    for warning in warnings:
        progress.log(f"warning: {warning}")
    manifest = write_manifest(spec, snapshot, plan, pack_stats, annotate_stats, report.get("generation"), warnings)
    publish_latest(spec, snapshot, manifest)
    t = report["totals"]
    written = {
        "tokens": f"{t['tokens']:,} tokens",
        "documents": f"{t['output_documents']:,} documents",
        "both": f"{t['tokens']:,} tokens and {t['output_documents']:,} documents",
    }[spec.output.kind]
    progress.log(
        f"done: {t['input_docs']:,} in, {t['kept_docs']:,} kept, {t['rejected_docs']:,} rejected, "
        f"{t['quarantined_docs']:,} quarantined; {written} in {len(pack_stats)} shards; counts balance"
        + (f"; {unreadable_summary(t)}" if t["unreadable_shards"] else "")
    )
    progress.log(f"snapshot {snapshot} committed; latest.json names it")
    return RunResult(spec.output.uri, layout.snapshot_manifest(snapshot), layout.report_md, report, snapshot, page_uri)
