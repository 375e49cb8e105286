"""Per-shard work as Ray tasks: at most one task per CPU in flight, results streamed back
as each unit finishes.

A phase's worker (models loaded, stages set up) is built once per worker process and
kept for the next task of the same phase, as an actor would keep it; but tasks need no
actor pool started per phase (seconds each), and Ray re-runs a task whose worker process
died. A process keeps one phase's worker at a time, so models do not pile up, and runs at
most ``ray.units_per_worker`` units before Ray replaces it, so its memory does not creep.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, TypeVar

from pipeline.config import JobSpec
from pipeline.core import storage
from pipeline.core.markers import Marker
from pipeline.core.memory import release_free_memory


class ShardWorker(ABC):
    """Per-process state for one phase; subclasses set it up in ``__init__``."""

    phase: str
    marker: type[Marker]
    """What ``run`` returns."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    @abstractmethod
    def run(self, item: dict[str, Any]) -> Marker:
        """Process one unit of work and return its stats."""

    def run_named(self, item: dict[str, Any]) -> Marker:
        release_free_memory()  # what the last unit, or a Ray Data task in this process, left
        try:
            return self.run(item)
        except UnitFailed as exc:
            raise ShardTaskError(str(exc), expected=True) from exc
        except Exception as exc:
            raise ShardTaskError(
                f"{self.phase} failed on {item.get('uri') or item['key']}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            release_free_memory()


class UnitFailed(Exception):
    """Raised by a unit of work for a failure the job foresees (``input.on_bad_shard:
    fail``); its message names the unit and says what to do, and no traceback is shown."""


class ShardTaskError(RuntimeError):
    """A unit of work failed; the message names the phase and the shard. ``expected``: the
    unit raised ``UnitFailed``; otherwise ``worker_traceback`` holds the worker's traceback
    (``refinery --debug`` prints it)."""

    def __init__(self, message: str, expected: bool = False, worker_traceback: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.worker_traceback = worker_traceback

    def __reduce__(self):  # raised in a Ray worker, unpickled on the driver
        return (ShardTaskError, (str(self), self.expected, self.worker_traceback))


_WORKERS: dict[str, ShardWorker] = {}


def _worker(worker: type[ShardWorker], spec_json: str) -> ShardWorker:
    key = f"{worker.__module__}.{worker.__qualname__}:{hashlib.sha256(spec_json.encode()).hexdigest()}"
    if key not in _WORKERS:
        _WORKERS.clear()
        _WORKERS[key] = worker(JobSpec.model_validate_json(spec_json))
    return _WORKERS[key]


def _run_item(worker: type[ShardWorker], spec_json: str, item: dict[str, Any]) -> str:
    return json.dumps(_worker(worker, spec_json).run_named(item).to_json())


def run_shard_tasks(
    worker: type[ShardWorker], spec: JobSpec, items: list[dict[str, Any]], max_workers: int
) -> Iterator[Any]:
    """Each item's result (``worker.marker``), in the order they finish."""
    import ray

    if not items:
        return
    remote = ray.remote(num_cpus=1, max_retries=3, max_calls=spec.ray.units_per_worker or 0)(_run_item)
    spec_json = ray.put(spec.model_dump_json())
    queue = list(reversed(items))
    pending: list[Any] = []
    interrupted = False
    try:
        while queue or pending:
            while queue and len(pending) < max(1, max_workers):
                pending.append(remote.remote(worker, spec_json, queue.pop()))
            # A bounded wait: the main thread returns to Python every second, so a Ctrl-C or
            # SIGTERM is handled at once rather than when some task finishes (a wait without a
            # timeout blocks in Ray's C++ code, which does not always look at Python's signals).
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            if not done:
                continue
            try:
                text = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                expected = isinstance(cause, ShardTaskError) and cause.expected
                raise ShardTaskError(
                    str(cause) if cause else str(exc), expected=expected, worker_traceback=str(exc)
                ) from None
            yield worker.marker.from_json(json.loads(text))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run stops and shuts Ray down, which ends
        interrupted = True  # the tasks; a cancel could wait on a control plane already gone
        raise
    finally:
        if not interrupted:
            for ref in pending:
                ray.cancel(ref)


M = TypeVar("M", bound=Marker)


def committed(marker: type[M], marker_uri: str, options: Any, config_hash: str) -> M | None:
    """A unit of work's marker when it exists and was written under ``config_hash``."""
    if storage.exists(marker_uri, options):
        stats = storage.read_json(marker_uri, options)
        if stats.get("config_hash") == config_hash:
            return marker.from_json(stats)
    return None
