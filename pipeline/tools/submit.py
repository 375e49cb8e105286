"""``refinery submit``, ``status``, ``logs`` and ``stop``: a job spec run on a Ray cluster
through the Ray Jobs API (the cluster's dashboard, port 8265 by default).

What travels with a submission is its runtime environment: a small ``working_dir`` that
holds only the spec (validated here, overrides applied, relative paths made absolute
against the submitter's directory), and ``py_modules`` with this ``pipeline`` package, so
the cluster runs the submitter's code. The cluster provides the dependencies (an image
with Refinery installed) and reads the input, models and output by their URIs. The
entrypoint is ``python -m pipeline.cli run SPEC --address auto``: the same ``run`` as
on a laptop, joining the cluster the job runs on.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from pipeline.config import JobSpec, load_job_spec
from pipeline.core import storage

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
PACKAGE_EXCLUDES = ["__pycache__/", "*.pyc"]


class SubmitError(RuntimeError):
    """The cluster cannot be reached, does not know the job, or refused the submission."""


def dashboard_address(address: str | None) -> str:
    """``--address``, else ``RAY_ADDRESS`` (the variable Ray's own job CLI reads), else the local dashboard."""
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


# --- the spec, as it travels --------------------------------------------------------------------


@dataclass
class PreparedSpec:
    spec: JobSpec
    data: dict[str, Any]
    """The spec with defaults filled in and local paths absolute: what the cluster runs."""
    local_paths: dict[str, str]
    """Key path -> absolute local path, for every local path that the job reads or writes."""


def _path_fields(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, bool]]:
    """(key path, the mapping that holds it, its key, whether the job uses it) of every path in a spec."""
    stages = data["stages"]
    fields = [
        ("input.uri", data["input"], "uri", True),
        ("output.uri", data["output"], "uri", True),
        ("stages.tokenize.model", stages["tokenize"], "model", True),
        ("stages.language.model", stages["language"], "model", stages["language"]["enabled"]),
    ]
    perplexity = stages["perplexity"]
    for lang, pair in perplexity["models"].items():
        for key in ("lm", "sp"):
            fields.append((f"stages.perplexity.models.{lang}.{key}", pair, key, perplexity["enabled"]))
    contamination = stages["contamination"]
    for b, eval_set in enumerate(contamination["benchmarks"]):
        fields.append((f"stages.contamination.benchmarks.{b}.uri", eval_set, "uri", contamination["enabled"]))
    nlp_model = stages["pii"]["nlp_model"]
    # A spaCy package name stays as it is; only something that looks like a path is one.
    if nlp_model and (os.sep in nlp_model or nlp_model.startswith((".", "~"))):
        fields.append(("stages.pii.nlp_model", stages["pii"], "nlp_model", stages["pii"]["enabled"]))
    return fields


def prepare_spec(source: str | Path, overrides: list[str] | None = None, check_files: bool = True) -> PreparedSpec:
    """Validate the spec here, so that its errors come back now and name the key, then make
    every local path absolute against this directory: the job runs elsewhere, in another one."""
    spec = load_job_spec(source, overrides, check_files=check_files)
    data = spec.model_dump(mode="json")
    local_paths = {}
    for key, holder, field, used in _path_fields(data):
        value = holder[field]
        if value and storage.protocol_of(value) == "file":
            holder[field] = storage.normalize_uri(value)
            if used:
                local_paths[key] = holder[field]
    load_job_spec(data, check_files=False)  # what travels still validates
    return PreparedSpec(spec, data, local_paths)


def local_path_warning(local_paths: dict[str, str]) -> str | None:
    if not local_paths:
        return None
    listed = "\n".join(f"  {key}: {path}" for key, path in local_paths.items())
    return (
        "warning: these are paths on this machine's disk; the job opens them on the cluster's nodes, so "
        "it works only where every node sees this filesystem at the same path (a shared mount). "
        "Use s3:// URIs otherwise.\n" + listed
    )


# --- the cluster's Jobs API ---------------------------------------------------------------------


def entrypoint(spec_file: str) -> str:
    return f"python -m pipeline.cli run {spec_file} --address auto"


def status_name(info: Any) -> str:
    return str(getattr(info.status, "value", info.status))


TOKEN_HINT = (
    "set RAY_AUTH_TOKEN to the cluster's token, or RAY_AUTH_TOKEN_PATH to a file holding it, or put it in "
    "~/.ray/auth_token (`ray get-auth-token` on the head prints it; KubeRay keeps it in a Secret)"
)


def auth_token() -> str | None:
    """The Ray cluster token, from where Ray's own clients look for it: ``RAY_AUTH_TOKEN``,
    the file ``RAY_AUTH_TOKEN_PATH`` names, ``~/.ray/auth_token``. Sent whenever found,
    whatever ``RAY_AUTH_MODE`` says here: the head, not this machine, decides whether it is
    needed, and a head without token authentication ignores it."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _auth_problem(address: str, exc: Exception) -> SubmitError | None:
    """The one-line error for a head that wants a token (401) or refused the one sent (403)."""
    text = str(exc)
    if "Authentication required" in text or "401" in text.split("\n", 1)[0]:
        return SubmitError(f"the Ray cluster at {address} requires a token (token authentication is on): {TOKEN_HINT}")
    if "Authentication failed" in text or "403" in text.split("\n", 1)[0]:
        return SubmitError(
            f"the Ray cluster at {address} refused the token sent from this machine: it is not that cluster's; "
            + TOKEN_HINT
        )
    return None


class JobsApi:
    """The Ray Jobs API of one cluster (``ray.job_submission.JobSubmissionClient``), with
    errors that say what to do instead of tracebacks."""

    def __init__(self, address: str | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        self.address = dashboard_address(address)
        token = auth_token()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self.client = JobSubmissionClient(self.address, headers=headers)
        except Exception as exc:  # refused, a server that is not Ray's, an unparsable address: the same advice
            problem = _auth_problem(self.address, exc)
            if problem:
                raise problem from None
            raise SubmitError(
                f"cannot reach the Ray Jobs API at {self.address} ({exc}). The head node's dashboard serves it, "
                "on port 8265 by default: start the head with `ray start --head --dashboard-host=0.0.0.0` "
                "(ray[default] installed), or forward that port to this machine (`kubectl port-forward "
                "svc/CLUSTER-head-svc 8265:8265`, `ray dashboard cluster.yaml`, `ssh -L 8265:127.0.0.1:8265 HEAD`) "
                "and pass --address http://127.0.0.1:8265"
            ) from None

    def submit(self, prepared: PreparedSpec, submission_id: str | None = None, source: str | None = None) -> str:
        """Submit a prepared spec; returns the submission id."""
        import pipeline

        spec_file = f"{prepared.spec.name}.yaml"
        header = (
            f"# submitted with `refinery submit {source or ''}` from {os.getcwd()}: "
            "defaults filled in, local paths absolute\n"
        )
        with tempfile.TemporaryDirectory(prefix="refinery-submit-") as working_dir:
            Path(working_dir, spec_file).write_text(header + yaml.safe_dump(prepared.data, sort_keys=False))
            runtime_env = {
                "working_dir": working_dir,
                "py_modules": [str(Path(pipeline.__file__).resolve().parent)],
                "excludes": PACKAGE_EXCLUDES,
            }
            metadata = {"refinery_job": prepared.spec.name, "refinery_output": prepared.data["output"]["uri"]}
            try:
                # Uploads both packages before it returns (content-addressed: an unchanged one is not sent again).
                return self.client.submit_job(
                    entrypoint=entrypoint(spec_file),
                    runtime_env=runtime_env,
                    submission_id=submission_id,
                    metadata=metadata,
                )
            except Exception as exc:  # the server's answer, e.g. that the submission id is taken
                raise _auth_problem(self.address, exc) or SubmitError(
                    f"the Ray Jobs API at {self.address} refused the job: {exc}"
                ) from None

    def info(self, submission_id: str) -> Any:
        """The job's ``JobDetails``: status, times, entrypoint, message, driver exit code, metadata."""
        try:
            return self.client.get_job_info(submission_id)
        except Exception as exc:
            raise self._error(submission_id, exc) from None

    def logs(self, submission_id: str) -> str:
        self.info(submission_id)
        try:
            return self.client.get_job_logs(submission_id)
        except Exception as exc:
            raise self._error(submission_id, exc) from None

    def follow(self, submission_id: str, out: TextIO) -> Any:
        """Write the driver's output to ``out`` as it comes, until the job ends; returns its final info."""
        self.info(submission_id)

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(submission_id):
                out.write(chunk)
                out.flush()

        try:
            asyncio.run(tail())
        except Exception as exc:
            raise self._error(submission_id, exc) from None
        return self.wait_for_end(submission_id, timeout_s=30)

    def wait_for_end(self, submission_id: str, timeout_s: float, interval_s: float = 0.5) -> Any:
        """The job's info once it has ended, or as last seen when ``timeout_s`` runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.info(submission_id)
            if status_name(info) in TERMINAL or time.monotonic() >= deadline:
                return info
            time.sleep(interval_s)

    def stop(self, submission_id: str, timeout_s: float) -> Any:
        """Ask the job to stop and wait until it has ended; returns its final info."""
        info = self.info(submission_id)
        if status_name(info) in TERMINAL:
            return info
        try:
            self.client.stop_job(submission_id)
        except Exception as exc:
            raise self._error(submission_id, exc) from None
        info = self.wait_for_end(submission_id, timeout_s)
        if status_name(info) not in TERMINAL:
            raise SubmitError(
                f"job '{submission_id}' at {self.address} was asked to stop but is still "
                f"{status_name(info)} after {timeout_s:g} s"
            )
        return info

    def _error(self, submission_id: str, exc: Exception) -> SubmitError:
        problem = _auth_problem(self.address, exc)
        if problem:
            return problem
        if "404" in str(exc) or "does not exist" in str(exc):
            return SubmitError(
                f"no job with submission id '{submission_id}' at {self.address} "
                "(`ray job list --address ADDRESS` lists the cluster's jobs)"
            )
        return SubmitError(f"job '{submission_id}' at {self.address}: {exc}")


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(info: Any) -> str:
    """``refinery status``: what the job is doing, since when, and why it failed."""
    status = status_name(info)
    lines = [
        f"submission id: {info.submission_id}",
        f"status:        {status}",
        f"entrypoint:    {info.entrypoint}",
        f"started:       {_when(info.start_time)}",
        f"ended:         {_when(info.end_time)}",
    ]
    metadata = info.metadata or {}
    if "refinery_job" in metadata:
        lines.append(f"job:           {metadata['refinery_job']}, output {metadata.get('refinery_output', '?')}")
    if info.driver_exit_code is not None:
        lines.append(f"exit code:     {info.driver_exit_code}")
    if info.message and status != "SUCCEEDED":
        lines.append(f"message:       {info.message}")
    return "\n".join(lines)


def exit_code(info: Any) -> int:
    """0 for a job that succeeded; else the driver's own exit code (2: the spec did not validate
    on the cluster), or 1."""
    if status_name(info) == "SUCCEEDED":
        return 0
    code = info.driver_exit_code
    return code if code and 0 < code < 256 else 1
