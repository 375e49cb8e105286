"""A reader of Megatron-LM's indexed dataset written from the format description alone
(megatron/core/datasets/indexed_dataset.py: _IndexReader), independent of pipeline.formats."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}


def read_indexed_dataset(prefix: Path | str) -> dict:
    idx = Path(f"{prefix}.idx").read_bytes()
    with open(f"{prefix}.idx", "rb") as stream:
        assert stream.read(9) == b"MMIDIDX\x00\x00", "bad magic"
        version = struct.unpack("<Q", stream.read(8))[0]
        dtype_code = struct.unpack("<B", stream.read(1))[0]
        sequence_count = struct.unpack("<Q", stream.read(8))[0]
        document_count = struct.unpack("<Q", stream.read(8))[0]
        offset = stream.tell()
    dtype = np.dtype(DTYPES[dtype_code])
    lengths = np.frombuffer(idx, dtype=np.int32, count=sequence_count, offset=offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(idx, dtype=np.int64, count=sequence_count, offset=offset)
    offset += pointers.nbytes
    documents = np.frombuffer(idx, dtype=np.int64, count=document_count, offset=offset)
    offset += documents.nbytes
    assert offset == len(idx), "trailing bytes in the index"
    data = np.memmap(f"{prefix}.bin", dtype=dtype, mode="r")
    sequences = [np.array(data[p // dtype.itemsize : p // dtype.itemsize + n]) for p, n in zip(pointers, lengths)]
    return {
        "version": version,
        "dtype": dtype,
        "lengths": lengths,
        "pointers": pointers,
        "documents": documents,
        "sequences": sequences,
        "num_tokens": len(data),
    }
