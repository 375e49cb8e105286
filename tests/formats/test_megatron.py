"""The Megatron writer checked byte by byte against a reader written from the format."""

import struct

import numpy as np
import pytest

from pipeline import formats
from pipeline.formats import megatron
from pipeline.phases.pack.packing import pack_bestfit, pack_concat
from tests.helpers.documents import token_documents
from tests.helpers.megatron_reader import read_indexed_dataset


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


@pytest.mark.parametrize("mode", ["concat", "bestfit"])
def test_megatron_shard_read_back_by_the_spec_reader(tmp_path, mode):
    dtype = formats.token_dtype("megatron", 70000)
    docs = token_documents(70000, seed=1)
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
