"""Fixtures of the whole-job tests."""

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers.jobs import Job


@pytest.fixture
def start_job():
    """Starts ``refinery run`` jobs (see Job) and, whatever the test did, leaves none running.
    Their Ray gets a temp dir of its own, so that a cluster someone else on this machine
    started (ray start, ray.cluster_utils) is never joined; a short one, for Ray's sockets."""
    ray_tmp = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    jobs: list[Job] = []

    def start(
        spec: Path, *overrides: str, stop_in: str | None = None, env_changes: dict[str, str | None] | None = None
    ) -> Job:
        jobs.append(Job(spec, ray_tmp, *overrides, stop_in=stop_in, env_changes=env_changes))
        return jobs[-1]

    yield start
    for job in jobs:
        if job.process.poll() is None:
            job.kill()
    shutil.rmtree(ray_tmp, ignore_errors=True)
