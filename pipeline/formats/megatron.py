"""Megatron-LM indexed dataset (``.bin`` + ``.idx``), byte layout of
``megatron/core/datasets/indexed_dataset.py``:

``.idx``: magic ``MMIDIDX\\x00\\x00``; version (<Q, 1); dtype code (<B); sequence count
(<Q); document count (<Q, length of the document index array); int32 sequence lengths;
int64 sequence byte pointers into ``.bin``; int64 document indices (sequence index at
which each document starts, from 0 up to and including the sequence count).
``.bin``: the tokens of all sequences back to back in the declared dtype.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32. (Megatron's own preprocessing switches to int32
    a little earlier, from 65,500 pieces; its reader takes either, the dtype is in the index.)"""
    return np.dtype(np.uint16) if vocab_size < 65536 else np.dtype(np.int32)


def encode_index(dtype: np.dtype, sequence_lengths: np.ndarray, document_indices: np.ndarray) -> bytes:
    lengths = np.asarray(sequence_lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    documents = np.asarray(document_indices, dtype=np.int64)
    header = MAGIC + struct.pack("<Q", VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
    header += struct.pack("<Q", len(lengths)) + struct.pack("<Q", len(documents))
    return header + lengths.tobytes(order="C") + pointers.tobytes(order="C") + documents.tobytes(order="C")


def encode_bin(tokens: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(tokens, dtype=dtype).tobytes(order="C")


@dataclass
class IndexedDataset:
    dtype: np.dtype
    sequence_lengths: np.ndarray
    sequence_pointers: np.ndarray
    document_indices: np.ndarray
    tokens: np.ndarray

    def sequence(self, i: int) -> np.ndarray:
        start = int(self.sequence_pointers[i]) // self.dtype.itemsize
        return self.tokens[start : start + int(self.sequence_lengths[i])]

    def __len__(self) -> int:
        return len(self.sequence_lengths)


def decode(idx_bytes: bytes, bin_bytes: bytes) -> IndexedDataset:
    """Parse a shard; used by ``refinery inspect`` and the pack phase's self-check."""
    if idx_bytes[:9] != MAGIC:
        raise ValueError("not a Megatron indexed dataset index (bad magic)")
    offset = 9
    (version,) = struct.unpack_from("<Q", idx_bytes, offset)
    offset += 8
    if version != VERSION:
        raise ValueError(f"unsupported index version {version}")
    (code,) = struct.unpack_from("<B", idx_bytes, offset)
    offset += 1
    sequence_count, document_count = struct.unpack_from("<QQ", idx_bytes, offset)
    offset += 16
    dtype = CODE_DTYPES[code]
    lengths = np.frombuffer(idx_bytes, np.int32, sequence_count, offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(idx_bytes, np.int64, sequence_count, offset)
    offset += pointers.nbytes
    documents = np.frombuffer(idx_bytes, np.int64, document_count, offset)
    return IndexedDataset(dtype, lengths, pointers, documents, np.frombuffer(bin_bytes, dtype))
