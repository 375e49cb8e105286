"""``refinery submit``, ``status``, ``logs`` and ``stop`` against a real Ray head on 127.0.0.1.

The head is ``ray start --head --block`` in a process of its own, stopped at the end with
every process it started (``ray stop`` would stop every Ray of this user, other tests' and
other people's too). Its environment has no PYTHONPATH to this checkout: the ``pipeline``
package reaches the job through the runtime environment, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from pipeline.cli import main
from tests.helpers import REPO, job_dict

ROOT = REPO
MARKER = "REFINERY_TEST_RAY_HEAD"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _head_processes(head: subprocess.Popen, marker: str) -> list[psutil.Process]:
    """Everything the head started: its process tree, and whatever carries the marker in its
    environment (a job driver runs in a session of its own)."""
    found = {}
    try:
        for process in [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]:
            found[process.pid] = process
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker:
                found[process.pid] = process
        except psutil.Error:
            continue
    return list(found.values())


@contextlib.contextmanager
def _head(token: str | None):
    """A Ray head on 127.0.0.1, with token authentication when ``token`` is given (Ray's
    default for ``ray start --head`` of this version; its token file is the test's own)."""
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="rf-head-", dir="/tmp")  # short: Ray's unix socket paths live under it
    gcs_port, dashboard_port = _free_port(), _free_port()
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        MARKER: marker,
        "RAY_AUTH_MODE": "token" if token else "disabled",
        # The entrypoint's `python` is this environment's, as in a cluster image.
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        # Ray swaps 127.0.0.1 for the machine's routable address unless multi-node clusters are
        # off; a single-node head then stays on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    token_file = Path(temp_dir) / "auth_token"
    if token:
        token_file.write_text(token)
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    for name in ("PYTHONPATH", "RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    command = [
        os.path.join(os.path.dirname(sys.executable), "ray"),
        "start",
        "--head",
        "--block",
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--object-store-memory=500000000",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = open(Path(temp_dir) / "head.log", "w")
    head = subprocess.Popen(
        command, env=env, cwd=temp_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                JobSubmissionClient(address, headers=headers).list_jobs()
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the Ray head did not come up:\n" + (Path(temp_dir) / "head.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield {
            "address": address,
            "gcs_address": f"127.0.0.1:{gcs_port}",
            "temp_dir": Path(temp_dir),
            "env": env,
            "marker": marker,
            "token_file": token_file if token else None,
        }
    finally:
        # Killed outright: a graceful `ray start` shutdown spends seconds on a head no one needs after this.
        seen: dict[int, psutil.Process] = {}
        for _ in range(3):  # a process started while the others were being killed is caught next round
            found = [p for p in _head_processes(head, marker) if p.pid not in seen or p.is_running()]
            if not found:
                break
            seen.update((p.pid, p) for p in found)
            for process in found:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(found, timeout=10)
        head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        alive = [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"processes of the test's Ray head still running: {alive}"


@pytest.fixture(scope="module")
def ray_head():
    """The head most tests use: token authentication on, as `ray start --head` has it by default."""
    with _head(token=uuid.uuid4().hex + uuid.uuid4().hex) as head:
        yield head


@pytest.fixture(autouse=True)
def submitter_token(request, monkeypatch):
    """The submitter finds the head's token where a user would point Ray to it."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    if "ray_head" in request.fixturenames:
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(request.getfixturevalue("ray_head")["token_file"]))


def refinery(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command line as a user runs it, with this checkout's package; ``env`` adds to or
    replaces variables of this test run's environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_submit_runs_a_job_to_success_and_status_and_logs_report_it(
    ray_head, sample_corpus, tokenizer_model, tmp_path, capsys, monkeypatch
):
    address = ray_head["address"]
    # Relative paths, resolved against the submitter's directory: the job itself runs in another one.
    spec = job_dict(
        os.path.relpath(sample_corpus, tmp_path),
        "out/small",
        os.path.relpath(tokenizer_model, tmp_path),
        stages={"language": {"enabled": False}, "exact_dedup": {"enabled": False}},
    )
    write_spec(tmp_path / "job.yaml", spec)
    done = refinery(
        "submit",
        "job.yaml",
        "--address",
        address,
        "--set",
        "name=small",
        "--submission-id",
        "refinery-small",
        "--wait",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"submitted job 'small' to {address} as refinery-small" in done.stdout
    assert "[refinery] job 'small': 4 input shards" in done.stdout  # --wait follows the driver's output
    assert done.stdout.rstrip().endswith("job refinery-small: SUCCEEDED")
    assert "paths on this machine's disk" in done.stderr
    assert f"input.uri: {sample_corpus}" in done.stderr and f"output.uri: {tmp_path / 'out' / 'small'}" in done.stderr

    output = tmp_path / "out" / "small"
    report = json.loads((output / "report.json").read_text())
    manifest = json.loads((output / "manifest.json").read_text())
    balance = report["balance"]
    assert balance["ok"] and balance["input"] == 500
    assert balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
    assert manifest["totals"]["documents"] == balance["kept"] > 0
    for shard in manifest["shards"]:
        for entry in shard["files"].values():
            assert (output / entry["path"]).stat().st_size == entry["bytes"]

    code, out, _ = cli(capsys, "status", "refinery-small", "--address", address)
    assert code == 0
    assert "status:        SUCCEEDED" in out
    assert "entrypoint:    python -m pipeline.cli run small.yaml --address auto" in out
    assert f"job:           small, output {output}" in out
    started = next(line for line in out.splitlines() if line.startswith("started:"))
    ended = next(line for line in out.splitlines() if line.startswith("ended:"))
    assert started.endswith("UTC") and ended.endswith("UTC") and "exit code:     0" in out

    code, out, _ = cli(capsys, "logs", "refinery-small", "--address", address)
    assert code == 0
    assert "[refinery] job 'small': 4 input shards" in out and "counts balance" in out
    snapshot = json.loads((output / "latest.json").read_text())["snapshot"]
    assert f"snapshot {snapshot} (now latest): {output / 'snapshots' / snapshot / 'manifest.json'}" in out

    # What travelled: the package and the resolved spec, unpacked on the head node.
    resources = next(ray_head["temp_dir"].glob("session_*/runtime_resources"))
    assert list(resources.glob("py_modules_files/*/pipeline/tools/submit.py"))
    travelled = yaml.safe_load(next(resources.glob("working_dir_files/*/small.yaml")).read_text())
    assert travelled["input"]["uri"] == str(sample_corpus)
    assert travelled["stages"]["tokenize"]["model"] == str(tokenizer_model)

    # A submission id is the cluster's: a second job cannot take it.
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "submit", "job.yaml", "--address", address, "--submission-id", "refinery-small")
    assert code == 1 and "refused the job" in err and "refinery-small" in err


def test_stop_ends_a_running_job(ray_head, sample_corpus, tokenizer_model, tmp_path, capsys):
    address = ray_head["address"]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for copy in range(8):  # 32 shards: far longer to run than to stop
        for shard in sorted(sample_corpus.glob("*.parquet")):
            shutil.copy(shard, corpus / f"copy{copy}-{shard.name}")
    spec = write_spec(
        tmp_path / "long.yaml", {**job_dict(str(corpus), str(tmp_path / "out"), str(tokenizer_model)), "name": "long"}
    )
    code, out, _ = cli(capsys, "submit", str(spec), "--address", address, "--submission-id", "refinery-long")
    assert code == 0
    assert f"refinery status refinery-long --address {address}" in out
    assert f"refinery logs refinery-long --address {address} --follow" in out

    deadline = time.monotonic() + 120
    while "[refinery] annotate: 32 shards" not in cli(capsys, "logs", "refinery-long", "--address", address)[1]:
        assert time.monotonic() < deadline, "the job never started annotating"
        time.sleep(0.5)
    code, out, _ = cli(capsys, "status", "refinery-long", "--address", address)
    assert code == 0 and "status:        RUNNING" in out

    code, out, _ = cli(capsys, "stop", "refinery-long", "--address", address, "--timeout", "60")
    assert code == 0 and out.strip() == "job refinery-long: STOPPED"
    code, out, _ = cli(capsys, "status", "refinery-long", "--address", address)
    assert code == 1 and "status:        STOPPED" in out and "message:" in out
    assert not (tmp_path / "out" / "manifest.json").exists()
    deadline = time.monotonic() + 15
    while _drivers(ray_head["marker"], "run long.yaml"):
        assert time.monotonic() < deadline, "the job's driver outlived its stop"
        time.sleep(0.5)


def _drivers(marker: str, command: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker and command in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_unknown_id_is_an_error_naming_id_and_address(ray_head, capsys):
    address = ray_head["address"]
    for command in ("status", "logs", "stop"):
        code, out, err = cli(capsys, command, "raysubmit_nosuchjob", "--address", address)
        assert code == 1 and out == ""
        assert f"error: no job with submission id 'raysubmit_nosuchjob' at {address}" in err


def test_bad_spec_fails_before_submitting_and_names_the_key(ray_head, make_job, sample_corpus, tmp_path, capsys):
    from pipeline.tools.submit import JobsApi

    address = ray_head["address"]
    jobs_before = len(JobsApi(address).client.list_jobs())
    job = make_job(sample_corpus, tmp_path / "out")
    job["stages"]["pack"]["seqlen"] = 128
    code, out, err = cli(capsys, "submit", str(write_spec(tmp_path / "typo.yaml", job)), "--address", address)
    assert code == 2 and "submitted" not in out
    assert "stages.pack.seqlen: unknown key; did you mean 'seq_len'?" in err
    job = make_job(sample_corpus, tmp_path / "out")
    code, _, err = cli(
        capsys,
        "submit",
        str(write_spec(tmp_path / "ok.yaml", job)),
        "--address",
        address,
        "--set",
        "stages.tokenize.model=missing.model",
    )
    assert code == 2 and "stages.tokenize.model: file not found: 'missing.model'" in err
    assert len(JobsApi(address).client.list_jobs()) == jobs_before


def test_a_job_that_fails_on_the_cluster_says_why(ray_head, make_job, sample_corpus, tmp_path, capsys):
    """A path that exists only "on the cluster" skips the local checks; there it does not exist either."""
    address = ray_head["address"]
    spec = write_spec(tmp_path / "job.yaml", make_job(sample_corpus, tmp_path / "out"))
    code, out, _ = cli(
        capsys,
        "submit",
        str(spec),
        "--address",
        address,
        "--submission-id",
        "refinery-failing",
        "--set",
        "stages.tokenize.model=/nonexistent/tok.model",
        "--no-file-checks",
        "--wait",
    )
    assert code == 2  # --wait exits with the driver's code: 2, a spec that does not validate
    assert "stages.tokenize.model: file not found: '/nonexistent/tok.model'" in out
    assert out.rstrip().splitlines()[-1].startswith("job refinery-failing: FAILED: ")
    code, out, _ = cli(capsys, "status", "refinery-failing", "--address", address)
    assert code == 1 and "status:        FAILED" in out and "exit code:     2" in out
    assert "message:       Job entrypoint command failed with exit code 2" in out


def test_unreachable_address_says_how_to_reach_the_dashboard(monkeypatch, capsys):
    address = f"http://127.0.0.1:{_free_port()}"
    code, out, err = cli(capsys, "status", "raysubmit_x", "--address", address)
    assert code == 1 and out == "" and "Traceback" not in err
    assert f"error: cannot reach the Ray Jobs API at {address}" in err
    assert "port 8265" in err and "ray start --head" in err and "port-forward" in err
    monkeypatch.setenv("RAY_ADDRESS", address)  # the default, as for Ray's own job CLI
    code, _, err = cli(capsys, "logs", "raysubmit_x")
    assert code == 1 and f"cannot reach the Ray Jobs API at {address}" in err
    monkeypatch.delenv("RAY_ADDRESS")
    from pipeline.tools.submit import DEFAULT_ADDRESS, dashboard_address

    assert dashboard_address(None) == DEFAULT_ADDRESS == "http://127.0.0.1:8265"


def test_ensure_ray_joins_the_cluster_named_by_ray_address(ray_head):
    """Inside a Ray job RAY_ADDRESS names the cluster: ensure_ray joins it (num_cpus would be an
    error there). An http:// RAY_ADDRESS is a dashboard: a local Ray starts as without one."""
    script = (
        "import os, ray\n"
        "from pipeline.config import RayConfig\n"
        "from pipeline.runner import ensure_ray\n"
        "ensure_ray(RayConfig(num_cpus=1))\n"
        "print('JOINED', ray.get_runtime_context().gcs_address, ray.cluster_resources()['CPU'])\n"
        "ray.shutdown()\n"
        f"os.environ['RAY_ADDRESS'] = {ray_head['address']!r}\n"
        "ensure_ray(RayConfig(num_cpus=1, object_store_memory_mb=100))\n"
        "print('LOCAL', ray.get_runtime_context().gcs_address, ray.cluster_resources()['CPU'],"
        " os.environ['RAY_ADDRESS'])\n"
        "ray.shutdown()\n"
    )
    env = {**ray_head["env"], "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ray_head["gcs_address"]}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"JOINED {ray_head['gcs_address']} 2.0" in done.stdout
    local = next(line for line in done.stdout.splitlines() if line.startswith("LOCAL"))
    assert ray_head["gcs_address"] not in local and local.endswith(f" 1.0 {ray_head['address']}")


def test_a_head_with_token_auth_asks_for_the_token_in_one_line(ray_head, tmp_path):
    """No token on the submitter's side (none in the environment, none in ~/.ray): one line
    saying where to put it, exit 1; a wrong one: one line saying it was refused. Mutation
    that fails it: JobsApi sends no Authorization header (or _auth_problem returns None)."""
    address = ray_head["address"]
    nowhere = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": "", "RAY_AUTH_TOKEN": ""}  # no ~/.ray/auth_token there
    for token, expected in (("", "requires a token"), ("not-the-token", "refused the token")):
        done = refinery(
            "status", "raysubmit_x", "--address", address, cwd=tmp_path, env=nowhere | {"RAY_AUTH_TOKEN": token}
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: the Ray cluster at {address} {expected}"), lines
        assert "RAY_AUTH_TOKEN" in lines[0] and "RAY_AUTH_TOKEN_PATH" in lines[0]
    token = ray_head["token_file"].read_text()
    done = refinery(
        "status", "raysubmit_x", "--address", address, cwd=tmp_path, env=nowhere | {"RAY_AUTH_TOKEN": token}
    )
    assert done.returncode == 1 and "no job with submission id 'raysubmit_x'" in done.stderr, done.stderr


def test_submit_to_a_head_without_token_auth(sample_corpus, tokenizer_model, tmp_path):
    """A head started with RAY_AUTH_MODE=disabled takes the same submission, the token this
    machine has (if any) notwithstanding."""
    with _head(token=None) as head:
        spec = write_spec(
            tmp_path / "job.yaml",
            {**job_dict(str(sample_corpus), str(tmp_path / "out"), str(tokenizer_model)), "name": "open"},
        )
        done = refinery("submit", str(spec), "--address", head["address"], "--wait", cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.rstrip().splitlines()[-1].endswith(": SUCCEEDED")
        assert json.loads((tmp_path / "out" / "report.json").read_text())["balance"]["ok"]
