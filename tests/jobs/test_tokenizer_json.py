"""Token outputs with a Hugging Face tokenizer.json (byte-level BPE as trained by
`refinery train-tokenizer --format tokenizer.json`; a 70,000-token vocabulary for the
Megatron dtype switch), read back with Megatron's format and decoded by `tokenizers`."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from pipeline import run_job
from pipeline.config import JobSpecError, load_job_spec
from pipeline.core.progress import Progress
from pipeline.tools.train_tokenizer import train_tokenizer
from tests.helpers.megatron_reader import read_indexed_dataset

pytestmark = pytest.mark.usefixtures("ray_local")
NO_DEDUP = {"exact_dedup": {"enabled": False}, "near_dedup": {"enabled": False}}


def _documents(out: Path, manifest: dict) -> list[list[int]]:
    eos = manifest["tokenizer"]["eos_id"]
    docs, current = [], []
    for shard in manifest["shards"]:
        dataset = read_indexed_dataset(out / shard["files"]["bin"]["path"][: -len(".bin")])
        for token in (t for seq in dataset["sequences"] for t in seq.tolist()):
            if token == eos:
                docs.append(current)
                current = []
            else:
                current.append(token)
    assert not current
    return docs


def _texts(corpus: Path) -> list[str]:
    return [
        t
        for p in sorted(corpus.glob("*.parquet"))
        for t in pq.read_table(p).column("text").to_pylist()
        if t and t.strip()
    ]


def test_a_job_with_a_byte_level_bpe_tokenizer_json(make_job, sample_corpus, tmp_path):
    model = tmp_path / "tok" / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(model), vocab_size=1500, tokenizer_format="tokenizer.json")
    out = tmp_path / "out"
    spec = make_job(sample_corpus, out, stages={"tokenize": {"model": str(model)}, **NO_DEDUP})
    result = run_job(spec, progress=Progress(quiet=True))
    assert result.report["balance"]["ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    raw = Tokenizer.from_file(str(model))
    tokenizer = manifest["tokenizer"]
    assert tokenizer["type"] == "tokenizers" and tokenizer["vocab_size"] == 1500
    assert tokenizer["eos_id"] == raw.token_to_id("<|endoftext|>") and tokenizer["bos_id"] == -1
    assert manifest["dtype"] == "uint16"
    decoded = [raw.decode(ids, skip_special_tokens=False) for ids in _documents(out, manifest)]
    assert sorted(decoded) == sorted(_texts(sample_corpus))  # every kept document exactly, once


def test_a_vocabulary_past_uint16_switches_megatron_to_int32(make_job, tmp_path):
    words = [f"w{i}" for i in range(70_000)]
    vocab = {w: i for i, w in enumerate(words)} | {"[UNK]": 70_000, "</s>": 70_001}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = tmp_path / "tokenizer.json"
    tok.save(str(model))
    corpus = tmp_path / "in"
    corpus.mkdir()
    rng = np.random.default_rng(1)
    texts = [" ".join(f"w{i}" for i in rng.integers(60_000, 70_000, 30)) for _ in range(50)]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(50)], "text": texts}), corpus / "a.parquet")
    out = tmp_path / "out"
    stages = {
        "tokenize": {"model": str(model), "eos_token": "</s>"},
        "language": {"enabled": False},
        **NO_DEDUP,
    }
    run_job(make_job(corpus, out, stages=stages), progress=Progress(quiet=True))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "int32" and manifest["tokenizer"]["eos_id"] == 70_001
    docs = _documents(out, manifest)
    assert sorted(" ".join(words[i] for i in ids) for ids in docs) == sorted(texts)
    assert max(max(ids) for ids in docs) >= 65_536


def test_validate_names_a_missing_eos_token(make_job, sample_corpus, tmp_path):
    vocab = {"a": 0, "[UNK]": 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    model = tmp_path / "tokenizer.json"
    tok.save(str(model))
    spec = make_job(sample_corpus, tmp_path / "out", stages={"tokenize": {"model": str(model)}})
    with pytest.raises(JobSpecError) as error:
        load_job_spec(spec)
    assert "stages.tokenize.add_eos: the tokenizer" in str(error.value)
    assert "has no EOS token; set stages.tokenize.add_eos: false or name it in stages.tokenize.eos_token" in str(
        error.value
    )
    spec["stages"]["tokenize"]["eos_token"] = "<|missing|>"
    with pytest.raises(JobSpecError, match="its eos token '<|missing|>' is not in its vocabulary"):
        load_job_spec(spec)
