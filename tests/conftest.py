"""Shared fixtures: one real local Ray (2 CPUs) per session, a small generated corpus, a
tokenizer trained on it, and a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_CORPUS, job_dict

pytest_plugins = ["tests.helpers.classifier_models", "tests.helpers.llm_server"]

# Set before Ray starts so its worker processes inherit them; only the loopback moto
# server ever sees these dummy credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray binds its services to the machine's outward address unless told it is not a cluster
# host (the switch Ray itself uses on macOS and Windows); tests stay on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def ray_local():
    """The same Ray set-up a job gets (run_job calls ensure_ray too), with 2 CPUs."""
    import ray

    from pipeline.config import RayConfig
    from pipeline.runner import ensure_ray

    ensure_ray(RayConfig(num_cpus=2, object_store_memory_mb=512))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    from pipeline.tools.sample import write_sample_corpus

    out = tmp_path_factory.mktemp("sample") / "corpus"
    write_sample_corpus(str(out), **SAMPLE_CORPUS)
    return out


@pytest.fixture(scope="session")
def tokenizer_model(sample_corpus, tmp_path_factory) -> Path:
    from pipeline.tools.train_tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("models") / "test.sp.model"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=1000, seed=0)
    return out


@pytest.fixture
def make_job(tokenizer_model):
    def make(input_uri, output_uri, **sections):
        return job_dict(str(input_uri), str(output_uri), str(tokenizer_model), **sections)

    return make


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto) on 127.0.0.1, reached over HTTP with s3fs, as s3fs's own tests do."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, anon=False)
    fs.invalidate_cache()
    return fs
