"""What the generation methods share: a round's result, and seed instructions read from JSON
lines (Self-Instruct's seed-task format, Alpaca records, or any record with an instruction)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.core import storage


@dataclass
class RoundResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    """Kept: ``id``, ``instruction``, ``messages`` (OpenAI chat), ``parents``, ``round``,
    ``completion_tokens``, and ``scores`` where a judge scored it."""
    rejected: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    sources: int = 0
    """Of ``records``, source documents kept beside their rewrites (no provenance)."""

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(frozen=True)
class SeedTask:
    id: str
    instruction: str
    input: str
    output: str


class SeedTaskError(ValueError):
    pass


def load_instructions(
    uri: str, options: storage.StorageOptions | None = None, instances_required: bool = False
) -> list[SeedTask]:
    """Seed instructions: a JSON object per line with ``instruction``; ``instances`` (a list of
    ``{input, output}``, Self-Instruct's format) or ``input``/``output`` (Alpaca's). A line
    without what the method needs is an error naming the file, the line and the field."""
    try:
        lines = storage.read_bytes(uri, options).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedTaskError(f"cannot read seed tasks {uri}: {exc}") from None
    tasks = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{uri} line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise SeedTaskError(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str) or not record["instruction"]:
            raise SeedTaskError(f"{where}: no 'instruction' (a non-empty string)")
        instances = record.get("instances")
        if instances is None and "output" in record:
            instances = [{"input": record.get("input") or "", "output": record["output"]}]
        if instances_required:
            if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
                raise SeedTaskError(f"{where}: no 'instances' (a list of {{input, output}})")
            if not isinstance(instances[0].get("output"), str):
                raise SeedTaskError(f"{where}: instances[0] has no 'output' string")
        first = instances[0] if isinstance(instances, list) and instances and isinstance(instances[0], dict) else {}
        task_id = str(record.get("id") or record.get("name") or f"seed_{number}")
        tasks.append(
            SeedTask(
                task_id, record["instruction"].strip(), str(first.get("input") or ""), str(first.get("output") or "")
            )
        )
    if not tasks:
        raise SeedTaskError(f"{uri} holds no seed tasks")
    return tasks


class SeededMethod:
    """A method that starts from seed instructions in a JSON lines file (``SEED_FIELD`` of its
    config names it)."""

    SEED_FIELD: str
    INSTANCES_REQUIRED = False

    @classmethod
    def source_problems(cls, config: Any, options: storage.StorageOptions | None = None) -> list[str]:
        """What is wrong with the seed file, as a run would read it."""
        try:
            load_instructions(getattr(config, cls.SEED_FIELD), options, cls.INSTANCES_REQUIRED)
        except SeedTaskError as exc:
            return [f"{cls.SEED_FIELD}: {exc}"]
        return []


class SingleRoundMethod:
    """A method that sends all its requests in one round and carries nothing to a next."""

    finished = False

    def max_rounds(self) -> int:
        return 1

    def shortfall(self) -> str | None:
        return None

    def done(self) -> bool:
        return self.finished

    def remember(self, records: list[dict[str, Any]]) -> None:
        self.finished = True
