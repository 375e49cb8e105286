"""Fixtures (a pytest plugin of tests/conftest.py): a real OpenAI-compatible server process,
``transformers serve`` from the trainers' venv, on 127.0.0.1, serving the small model that
tests/helpers/tiny_llm.py builds and trains offline on tests/helpers/instruction_grammar.py's
prompts (about a minute on 2 cores); and fault proxies in front of it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINERS_BIN = REPO / "benchmarks" / ".venv-trainers" / "bin"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class LLMServer:
    base_url: str
    model: str
    port: int
    process: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the LLM server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the LLM server did not answer {url} within {timeout_s:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def tiny_llm(sample_corpus, tmp_path_factory) -> Path:
    import pyarrow.parquet as pq

    if not (TRAINERS_BIN / "transformers").exists():
        pytest.fail(f"{TRAINERS_BIN}/transformers is missing: `make test` builds the trainers' venv")
    from tests.helpers.instruction_grammar import training_pairs

    root = tmp_path_factory.mktemp("tiny-llm")
    text = "\n".join(t for f in sorted(sample_corpus.glob("*.parquet")) for t in pq.read_table(f)["text"].to_pylist())
    (root / "text.txt").write_text(text)
    (root / "pairs.json").write_text(json.dumps(training_pairs(documents=text.split("\n\n"))))
    script = str(REPO / "tests" / "helpers" / "tiny_llm.py")
    subprocess.run(
        [str(TRAINERS_BIN / "python"), script, str(root / "text.txt"), str(root / "model"), str(root / "pairs.json")],
        check=True,
        env={**os.environ, **OFFLINE},
    )
    return root / "model"


def start_llm_server(model: Path, log: Path) -> LLMServer:
    port = _free_port()
    process = subprocess.Popen(
        [str(TRAINERS_BIN / "transformers"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1"},
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    _wait_until_serving(f"{base_url}/models", process, log)
    return LLMServer(base_url, str(model), port, process)


@pytest.fixture(scope="session")
def llm_server(tiny_llm, tmp_path_factory):
    server = start_llm_server(tiny_llm, tmp_path_factory.mktemp("llm-server") / "server.log")
    yield server
    server.process.terminate()
    server.process.wait(timeout=30)


@dataclass
class Proxy:
    base_url: str
    port: int
    process: subprocess.Popen

    def state(self, what: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__{what}__", timeout=10) as reply:
            return json.loads(reply.read())


@pytest.fixture
def fault_proxy():
    """``start(upstream_port, schedule)``: tests/helpers/fault_proxy.py in front of a server."""
    started: list[subprocess.Popen] = []

    def start(upstream_port: int, schedule: list[dict]) -> Proxy:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.fault_proxy", str(upstream_port), json.dumps(schedule)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        started.append(process)
        port = int(process.stdout.readline())
        return Proxy(f"http://127.0.0.1:{port}/v1", port, process)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)
