"""Fixtures (a pytest plugin of tests/conftest.py): a real OpenAI-compatible server process,
``transformers serve`` from the trainers' venv, on 127.0.0.1, serving the small model that
tests/helpers/tiny_llm.py builds and trains offline on tests/helpers/instruction_grammar.py's
prompts (two minutes on 2 cores: the last build is kept in tests/fixtures/tiny_llm with the
digest of its inputs, and trained again only when they change); and fault proxies in front
of it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
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


BUILT = REPO / "tests" / "fixtures" / "tiny_llm"
"""The model tests/helpers/tiny_llm.py last built from the sample corpus and the grammar's
pairs, kept in the repository with the digest of those inputs (``inputs.sha256``): training
it takes two minutes of the suite's budget on 2 cores, so the fixture trains only when its
inputs changed (``make tiny-llm`` builds it again and keeps the new one)."""


def training_inputs(corpus: Path, root: Path) -> str:
    """Writes the training text and pairs under ``root``; returns the digest of everything
    the model is built from (those files and the build script)."""
    import pyarrow.parquet as pq

    from tests.helpers.instruction_grammar import training_pairs

    text = "\n".join(t for f in sorted(corpus.glob("*.parquet")) for t in pq.read_table(f)["text"].to_pylist())
    (root / "text.txt").write_text(text)
    (root / "pairs.json").write_text(json.dumps(training_pairs(documents=text.split("\n\n"))))
    digest = hashlib.sha256()
    for part in (root / "text.txt", root / "pairs.json", REPO / "tests" / "helpers" / "tiny_llm.py"):
        digest.update(part.read_bytes())
    return digest.hexdigest()


def train_tiny_llm(root: Path) -> Path:
    script = str(REPO / "tests" / "helpers" / "tiny_llm.py")
    subprocess.run(
        [str(TRAINERS_BIN / "python"), script, str(root / "text.txt"), str(root / "model"), str(root / "pairs.json")],
        check=True,
        env={**os.environ, **OFFLINE},
    )
    return root / "model"


@pytest.fixture(scope="session")
def tiny_llm(sample_corpus, tmp_path_factory) -> Path:
    if not (TRAINERS_BIN / "transformers").exists():
        pytest.fail(f"{TRAINERS_BIN}/transformers is missing: `make test` builds the trainers' venv")
    root = tmp_path_factory.mktemp("tiny-llm")
    digest = training_inputs(sample_corpus, root)
    kept = BUILT / "inputs.sha256"
    if kept.exists() and kept.read_text().strip() == digest:
        shutil.copytree(BUILT / "model", root / "model")
        return root / "model"
    warnings.warn(
        "tests/fixtures/tiny_llm was built from other inputs: training the test LLM (2 minutes); "
        "`make tiny-llm` keeps the new one",
        stacklevel=1,
    )
    return train_tiny_llm(root)


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


def keep_tiny_llm() -> None:
    """``make tiny-llm``: trains the model on the inputs the fixture would use and keeps it."""
    import tempfile

    from pipeline.tools.sample import write_sample_corpus
    from tests.helpers import SAMPLE_CORPUS

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sample_corpus(str(root / "corpus"), **SAMPLE_CORPUS)
        digest = training_inputs(root / "corpus", root)
        model = train_tiny_llm(root)
        shutil.rmtree(BUILT, ignore_errors=True)
        shutil.copytree(model, BUILT / "model")
        (BUILT / "inputs.sha256").write_text(digest + "\n")
    print(f"kept the test LLM in {BUILT.relative_to(REPO)} (inputs {digest[:12]})")


if __name__ == "__main__":
    keep_tiny_llm()
