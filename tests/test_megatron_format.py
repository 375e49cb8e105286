"""The shard writers checked byte by byte against readers written from the formats."""

import struct

import numpy as np
import pytest

from pipeline import formats
from pipeline.formats import datatrove, megatron
from pipeline.stages.pack import pack_bestfit, pack_concat
from tests.datatrove_reader import read_datatrove
from tests.megatron_reader import read_indexed_dataset


def test_index_layout_and_round_trip(tmp_path):
    dtype = megatron.token_dtype(32000)
    tokens = np.arange(11, dtype=dtype)
    lengths = np.array([4, 4, 3], dtype=np.int32)
    (tmp_path / "s.bin").write_bytes(megatron.encode_bin(tokens, dtype))
    index = megatron.encode_index(dtype, lengths, np.arange(4))
    (tmp_path / "s.idx").write_bytes(index)

    assert index[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack_from("<QBQQ", index, 9) == (1, 8, 3, 4)  # version, uint16 code, sequences, documents
    read = read_indexed_dataset(tmp_path / "s")
    assert read["dtype"] == np.uint16
    assert read["pointers"].tolist() == [0, 8, 16]
    assert read["documents"].tolist() == [0, 1, 2, 3]
    assert [s.tolist() for s in read["sequences"]] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]

    parsed = megatron.decode(index, (tmp_path / "s.bin").read_bytes())
    assert parsed.sequence(2).tolist() == [8, 9, 10]


def test_dtype_follows_vocabulary_size():
    assert megatron.token_dtype(65535) == np.uint16
    assert megatron.token_dtype(65536) == np.int32
    assert megatron.DTYPE_CODES[np.dtype(np.int32)] == 4
    assert formats.token_dtype("datatrove", 65535) == np.dtype("<u2")
    assert formats.token_dtype("datatrove", 128256) == np.dtype("<u4")


def _documents(vocab, seed=0, longest=40):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab, rng.integers(1, longest + 1)).astype(np.int64) for _ in range(60)]


@pytest.mark.parametrize("vocab", [32000, 100000])
@pytest.mark.parametrize("mode", ["concat", "bestfit"])
def test_datatrove_files_read_back_by_the_spec_reader(tmp_path, vocab, mode):
    dtype = formats.token_dtype("datatrove", vocab)
    docs = _documents(vocab, longest=40 if mode == "concat" else 32)
    packed = pack_concat(docs, 32, dtype) if mode == "concat" else pack_bestfit(docs, 32, 3, dtype)
    files = formats.encode_shard("datatrove", packed, dtype, "tok.model")
    for role, path in formats.shard_files("datatrove", "shard-00000").items():
        (tmp_path / path).write_bytes(files[role])
    read = read_datatrove(tmp_path / "shard-00000.ds")
    assert read["token_size"] == dtype.itemsize and read["tokenizer"] == "tok.model"
    assert read["token_count"] == len(read["tokens"]) == int(read["ends"][-1])
    assert read["tokens"].tolist() == packed.tokens.tolist()
    text_units = [u.tolist() for u in read["units"] if not (mode == "bestfit" and np.all(u == 3))]
    if mode == "concat":
        assert text_units == [d.tolist() for d in docs]  # one index entry per document
    else:
        assert sorted(map(tuple, text_units)) == sorted(tuple(d.tolist()) for d in docs)  # none split (<= 32)
        assert read["token_count"] % 32 == 0
    decoded = formats.decode_shard("datatrove", files)
    assert decoded.problems == [] and decoded.tokens.tolist() == packed.tokens.tolist()


@pytest.mark.parametrize("mode", ["concat", "bestfit"])
def test_megatron_shard_read_back_by_the_spec_reader(tmp_path, mode):
    dtype = formats.token_dtype("megatron", 70000)
    docs = _documents(70000, seed=1)
    packed = pack_concat(docs, 32, dtype) if mode == "concat" else pack_bestfit(docs, 32, 3, dtype)
    files = formats.encode_shard("megatron", packed, dtype, "tok.model")
    for role, path in formats.shard_files("megatron", "s").items():
        (tmp_path / path).write_bytes(files[role])
    read = read_indexed_dataset(tmp_path / "s")
    assert read["dtype"] == np.int32
    assert np.concatenate(read["sequences"]).tolist() == packed.tokens.tolist()
    assert read["lengths"].tolist() == packed.sequence_lengths.tolist()
    assert read["documents"].tolist() == list(range(len(packed.sequence_lengths) + 1))
    assert formats.decode_shard("megatron", files).problems == []


def test_metadata_count_is_humanized_as_datatrove_writes_it():
    # Values printed by humanize.metric(n, unit="T") (humanize 4.17, datatrove's dependency).
    expected = {0: "0.00 T", 12: "12.0 T", 999: "999 T", 1000: "1.00 kT", 99999: "100 kT", 1234567: "1.23 MT",
                5_000_000_000: "5.00 GT"}
    assert {n: datatrove.humanized(n) for n in expected} == expected
    assert datatrove.encode_metadata("tok", 2, 1234567) == b"tok|2\n1234567\n1.23 MT"
