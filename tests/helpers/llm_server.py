"""Fixtures (a pytest plugin of tests/conftest.py): a real OpenAI-compatible server process,
``transformers serve`` from the trainers' venv, on 127.0.0.1, serving the small model that
tests/helpers/tiny_llm.py builds and trains offline on tests/helpers/instruction_grammar.py's
prompts (about two minutes on 2 cores, in a background process started when the tests are
collected, while the tests that do not need it run first); and fault proxies in front of it."""

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


BUILD = pytest.StashKey[tuple[subprocess.Popen, Path]]()


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items) -> None:
    """The modules of tests that need the LLM run last, and its build starts now, in the background: the
    two minutes of training overlap the tests before them (most of which wait on Ray or on
    subprocesses more than they compute)."""
    modules = {item.path for item in items if "tiny_llm" in getattr(item, "fixturenames", ())}
    if not modules:
        return
    items[:] = [item for item in items if item.path not in modules] + [i for i in items if i.path in modules]
    if config.option.collectonly or not (TRAINERS_BIN / "transformers").exists():
        return  # (without the venv, the fixture says what is missing)
    root = config._tmp_path_factory.mktemp("tiny-llm")
    log = (root / "build.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.llm_server", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, **OFFLINE},
    )
    config.stash[BUILD] = (process, root)


def pytest_unconfigure(config) -> None:
    process, _ = config.stash.get(BUILD, (None, None))
    if process is not None and process.poll() is None:
        process.kill()


def build_tiny_llm(root: Path) -> Path:
    """The sample corpus (as tests/conftest.py writes it), the training pairs, and the model
    trained on them by tests/helpers/tiny_llm.py in the trainers' venv: ``root/model``."""
    import pyarrow.parquet as pq

    from pipeline.tools.sample import write_sample_corpus
    from tests.helpers import SAMPLE_CORPUS
    from tests.helpers.instruction_grammar import training_pairs

    write_sample_corpus(str(root / "corpus"), **SAMPLE_CORPUS)
    texts = [t for f in sorted((root / "corpus").glob("*.parquet")) for t in pq.read_table(f)["text"].to_pylist()]
    text = "\n".join(texts)
    (root / "text.txt").write_text(text)
    (root / "pairs.json").write_text(json.dumps(training_pairs(documents=text.split("\n\n"))))
    script = str(REPO / "tests" / "helpers" / "tiny_llm.py")
    subprocess.run(
        [str(TRAINERS_BIN / "python"), script, str(root / "text.txt"), str(root / "model"), str(root / "pairs.json")],
        check=True,
        env={**os.environ, **OFFLINE},
    )
    return root / "model"


@pytest.fixture(scope="session")
def tiny_llm(request) -> Path:
    if not (TRAINERS_BIN / "transformers").exists():
        pytest.fail(f"{TRAINERS_BIN}/transformers is missing: `make test` builds the trainers' venv")
    process, root = request.config.stash[BUILD]
    if process.wait() != 0:
        pytest.fail(f"building the test LLM failed:\n{(root / 'build.log').read_text()[-3000:]}")
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


if __name__ == "__main__":
    build_tiny_llm(Path(sys.argv[1]))
