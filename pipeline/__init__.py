"""Refinery: raw text corpora to LLM pretraining token shards, on Ray Data."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import JobSpec, JobSpecError, load_job_spec
    from pipeline.runner import RunResult, run_job

__all__ = ["JobSpec", "JobSpecError", "RunResult", "load_job_spec", "run_job"]
__version__ = "0.1.0"

# Imported on first use, so that `refinery --help` does not load every stage's libraries.
_PUBLIC = {
    "JobSpec": "pipeline.config",
    "JobSpecError": "pipeline.config",
    "load_job_spec": "pipeline.config",
    "RunResult": "pipeline.runner",
    "run_job": "pipeline.runner",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
