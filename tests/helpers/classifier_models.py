"""Fixtures (a pytest plugin of tests/conftest.py): classifiers trained with the code of
``refinery train-classifier`` on the sample generator's domains, a quality model (docs
against web pages) and a topic model (code, docs, web)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.tools.sample import build_sample_documents
from pipeline.tools.train_classifier import TrainingOptions, train_classifier

# small models: 20k n-gram buckets x 32 dimensions (a few MB)
SMALL = {"dim": 32, "bucket": 20_000, "per_label": 2_000}


@pytest.fixture(scope="session")
def domain_corpora(tmp_path_factory) -> dict[str, Path]:
    rows, _ = build_sample_documents(3000, seed=3)
    root = tmp_path_factory.mktemp("classifier-corpora")
    corpora = {}
    for domain in ("code", "docs", "web"):
        corpora[domain] = root / domain
        corpora[domain].mkdir()
        texts = [r["text"] for r in rows if r["domain"] == domain]
        pq.write_table(pa.table({"text": texts}), corpora[domain] / "part-0.parquet")
    return corpora


@pytest.fixture(scope="session")
def quality_model(domain_corpora, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("classifier-models") / "quality.bin")
    corpora = {"hq": [str(domain_corpora["docs"])], "cc": [str(domain_corpora["web"])]}
    train_classifier(corpora, out, TrainingOptions(**SMALL))
    return out


@pytest.fixture(scope="session")
def topic_model(domain_corpora, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("classifier-models") / "topic.bin")
    train_classifier({d: [str(p)] for d, p in domain_corpora.items()}, out, TrainingOptions(**SMALL))
    return out
