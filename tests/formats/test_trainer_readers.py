"""Refinery's shard writers against the trainers' own readers: Megatron-LM's IndexedDataset
(megatron-core) and datatrove's DatatroveFileDataset.

The shards are written here with Refinery's packers and writers; benchmarks/trainer_readers.py
reads them in a separate venv (torch CPU + megatron-core + datatrove, ``make
trainer-readers``) and compares with expected.json. Expected sequences and document ends of
``concat`` shards are computed here from the documents alone; those of ``bestfit`` shards come
from the packer (their layout is the packer's choice), checked here for what bestfit promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import formats
from pipeline.phases.pack.packing import pack_bestfit, pack_concat
from tests.helpers import REPO

ROOT = REPO
TRAINERS_PYTHON = ROOT / "benchmarks" / ".venv-trainers" / "bin" / "python"
SCRIPT = ROOT / "benchmarks" / "trainer_readers.py"
SEQ_LEN = 64
TOKENIZER = "refinery-test-tokenizer"


def random_documents(rng: np.random.Generator, vocab: int, count: int) -> list[np.ndarray]:
    """``count`` documents of random lengths (many longer than SEQ_LEN), plus the edge
    lengths: 1, SEQ_LEN - 1, SEQ_LEN, SEQ_LEN + 1 and 2 * SEQ_LEN. Ids avoid vocab - 1, the
    padding id."""
    lengths = rng.integers(1, 3 * SEQ_LEN, size=count).tolist()
    lengths += [1, SEQ_LEN - 1, SEQ_LEN, SEQ_LEN + 1, 2 * SEQ_LEN]
    order = rng.permutation(len(lengths))
    return [rng.integers(0, vocab - 1, size=lengths[i], dtype=np.int64) for i in order]


def concat_expectation(documents: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    stream = np.concatenate(documents)
    sequences = [stream[i : i + SEQ_LEN] for i in range(0, len(stream), SEQ_LEN)]
    return stream, sequences, np.cumsum([len(d) for d in documents])


def check_bestfit(packed, documents: list[np.ndarray], pad_id: int) -> None:
    """What bestfit promises, so the packer's layout can serve as the expectation."""
    tokens = np.asarray(packed.tokens, dtype=np.int64)
    assert np.all(packed.sequence_lengths == SEQ_LEN)
    assert len(tokens) == SEQ_LEN * len(packed.sequence_lengths)
    assert int(np.count_nonzero(tokens != pad_id)) == sum(len(d) for d in documents)
    assert int(np.count_nonzero(tokens == pad_id)) == packed.padding_tokens
    ends = np.asarray(packed.unit_ends, dtype=np.int64)
    assert ends[-1] == len(tokens) and np.all(np.diff(ends) > 0)
    # No unit crosses a sequence boundary, and each unit is all padding or all text.
    assert set(range(SEQ_LEN, len(tokens) + 1, SEQ_LEN)) <= set(ends.tolist())
    starts = np.concatenate([[0], ends[:-1]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        pads = np.count_nonzero(tokens[start:end] == pad_id)
        assert pads in (0, end - start)
    assert any(len(d) > SEQ_LEN for d in documents)


def write_shard(root: Path, fmt: str, stem: str, packed, dtype: np.dtype) -> None:
    paths = formats.shard_files(fmt, stem)
    for role, data in formats.encode_shard(fmt, packed, dtype, TOKENIZER).items():
        (root / paths[role]).write_bytes(data)


def build_shards(root: Path) -> list[dict]:
    rng = np.random.default_rng(20261127)
    entries = []

    # Megatron, uint16, concat.
    vocab = 32000
    dtype = formats.token_dtype("megatron", vocab)
    assert dtype == np.uint16
    documents = random_documents(rng, vocab, 300)
    packed = pack_concat(documents, SEQ_LEN, dtype)
    stream, sequences, _ = concat_expectation(documents)
    assert len(sequences[-1]) < SEQ_LEN  # the shorter last sequence is exercised
    write_shard(root, "megatron", "megatron_u16_concat", packed, dtype)
    entries.append(
        {
            "format": "megatron",
            "prefix": "megatron_u16_concat",
            "dtype": "uint16",
            "seq_len": SEQ_LEN,
            "mode": "concat",
            "sequences": [s.tolist() for s in sequences],
            "document_indices": list(range(len(sequences) + 1)),
        }
    )

    # Megatron, int32 (vocabulary 70000), bestfit.
    vocab = 70000
    dtype = formats.token_dtype("megatron", vocab)
    assert dtype == np.int32
    documents = random_documents(rng, vocab, 300)
    assert any(np.max(d) >= 65536 for d in documents)
    pad_id = vocab - 1
    packed = pack_bestfit(documents, SEQ_LEN, pad_id, dtype)
    check_bestfit(packed, documents, pad_id)
    tokens = np.asarray(packed.tokens, dtype=np.int64)
    sequences = np.split(tokens, np.cumsum(packed.sequence_lengths)[:-1])
    write_shard(root, "megatron", "megatron_i32_bestfit", packed, dtype)
    entries.append(
        {
            "format": "megatron",
            "prefix": "megatron_i32_bestfit",
            "dtype": "int32",
            "seq_len": SEQ_LEN,
            "mode": "bestfit",
            "pad_id": pad_id,
            "sequences": [s.tolist() for s in sequences],
            "document_indices": list(range(len(sequences) + 1)),
        }
    )

    # datatrove, uint16, concat. The reader's seq_len is SEQ_LEN - 1: it reads seq_len + 1 tokens.
    vocab = 32000
    dtype = formats.token_dtype("datatrove", vocab)
    assert dtype == np.dtype("<u2")
    documents = random_documents(rng, vocab, 300)
    packed = pack_concat(documents, SEQ_LEN, dtype)
    stream, _, ends = concat_expectation(documents)
    assert len(stream) % SEQ_LEN  # a tail shorter than one window is exercised
    write_shard(root, "datatrove", "datatrove_u16_concat", packed, dtype)
    entries.append(
        {
            "format": "datatrove",
            "path": "datatrove_u16_concat.ds",
            "dtype": "uint16",
            "token_size": 2,
            "seq_len": SEQ_LEN,
            "reader_seq_len": SEQ_LEN - 1,
            "mode": "concat",
            "tokenizer": TOKENIZER,
            "tokens": stream.tolist(),
            "doc_ends": ends.tolist(),
        }
    )

    # datatrove, uint32, bestfit.
    vocab = 70000
    dtype = formats.token_dtype("datatrove", vocab)
    assert dtype == np.dtype("<u4")
    documents = random_documents(rng, vocab, 300)
    pad_id = vocab - 1
    packed = pack_bestfit(documents, SEQ_LEN, pad_id, dtype)
    check_bestfit(packed, documents, pad_id)
    write_shard(root, "datatrove", "datatrove_u32_bestfit", packed, dtype)
    entries.append(
        {
            "format": "datatrove",
            "path": "datatrove_u32_bestfit.ds",
            "dtype": "uint32",
            "token_size": 4,
            "seq_len": SEQ_LEN,
            "reader_seq_len": SEQ_LEN - 1,
            "mode": "bestfit",
            "pad_id": pad_id,
            "tokenizer": TOKENIZER,
            "tokens": np.asarray(packed.tokens, dtype=np.int64).tolist(),
            "doc_ends": np.asarray(packed.unit_ends, dtype=np.int64).tolist(),
        }
    )
    return entries


def test_trainer_readers_read_refinery_shards(tmp_path):
    if not TRAINERS_PYTHON.exists():
        pytest.skip(
            f"{TRAINERS_PYTHON.relative_to(ROOT)} not found: run `make trainer-readers` to install "
            "megatron-core + datatrove + torch (CPU) into benchmarks/.venv-trainers"
        )
    shards = tmp_path / "shards"
    shards.mkdir()
    entries = build_shards(shards)
    (shards / "expected.json").write_text(json.dumps({"files": entries}))

    result_path = tmp_path / "result.json"
    proc = subprocess.run(
        [str(TRAINERS_PYTHON), str(SCRIPT), str(shards), "--json", str(result_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    sys.stdout.write(proc.stdout)
    assert proc.returncode == 0, (
        f"trainer readers failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )
    result = json.loads(result_path.read_text())
    assert result["ok"]
    assert sorted(r["file"] for r in result["files"]) == sorted(
        ["megatron_u16_concat", "megatron_i32_bestfit", "datatrove_u16_concat.ds", "datatrove_u32_bestfit.ds"]
    )
    for r in result["files"]:
        assert r["ok"], r
        assert r["problems"] == []
    megatron_files = [r for r in result["files"] if r["format"] == "megatron"]
    assert all(r["byte_identical_to_megatron_builder"] for r in megatron_files)
