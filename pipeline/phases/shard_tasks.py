"""Per-shard work on Ray Data: one row per shard, an autoscaling pool of actors that each
set up their stages once, and results streamed back as each shard finishes."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Iterator

import pyarrow as pa

from pipeline.config import JobSpec


class ShardWorker(ABC):
    """Ray Data callable class; subclasses set up per-worker state in ``__init__``."""

    phase: str

    def __init__(self, spec_json: str) -> None:
        self.spec = JobSpec.model_validate_json(spec_json)

    @abstractmethod
    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        """Process one shard and return its stats (JSON-serializable)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for item in batch.to_pylist():
            try:
                out.append(json.dumps(self.run(item)))
            except Exception as exc:
                raise RuntimeError(
                    f"{self.phase} failed on shard {item.get('uri') or item['key']}: {type(exc).__name__}: {exc}"
                ) from exc
        return pa.table({"stats": pa.array(out, pa.string())})


def run_shard_tasks(worker: type[ShardWorker], spec: JobSpec, items: list[dict[str, Any]],
                    max_workers: int) -> Iterator[dict[str, Any]]:
    import ray.data

    if not items:
        return
    results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        worker,
        fn_constructor_kwargs={"spec_json": spec.model_dump_json()},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(max_workers, len(items)))),
        num_cpus=1,
    )
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        for text in batch.column("stats").to_pylist():
            yield json.loads(text)
