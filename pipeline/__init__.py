"""Refinery: raw text corpora to LLM pretraining token shards, on Ray Data."""

from pipeline.config import JobSpec, JobSpecError, load_job_spec
from pipeline.runner import RunResult, run_job

__all__ = ["JobSpec", "JobSpecError", "RunResult", "load_job_spec", "run_job"]
__version__ = "0.1.0"
