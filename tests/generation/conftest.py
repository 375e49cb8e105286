from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.tools.train_tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def chat_tokenizer(sample_corpus, tmp_path_factory) -> Path:
    """A ``tokenizer.json`` for the chat path of generation jobs (one for the whole session)."""
    out = tmp_path_factory.mktemp("generation-tok") / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=2000, tokenizer_format="tokenizer.json")
    return out
