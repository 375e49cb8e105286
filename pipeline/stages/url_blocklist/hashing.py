"""64-bit FNV-1a over the bytes of many strings at once, with numpy.

A domain is hashed over its bytes in reverse (``moc.elpmaxe``), so that one right-to-left
pass over a host yields the hash of the host and of every parent domain: the running hash
just before each ``.`` is the hash of that suffix. A URL prefix is hashed forwards, and
the running hash just before each ``/`` is the hash of that prefix.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
DOT = ord(".")
SLASH = ord("/")

# Bytes of strings hashed at once by ``fnv1a`` (with their uint64 hashes, a few times that).
_MATRIX_BYTES = 1 << 24


def string_bytes(strings: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, starts, lengths): the UTF-8 bytes of a string array, and where each string lies
    in them; a null has length 0."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks() if strings.num_chunks else pa.array([], strings.type)
    n = len(strings)
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    _, offsets_buffer, data_buffer = strings.buffers()
    if n == 0 or offsets_buffer is None:
        return np.zeros(0, np.uint8), np.zeros(n, np.int64), np.zeros(n, np.int64)
    offsets = np.frombuffer(offsets_buffer, offset_type)[strings.offset : strings.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if strings.null_count:
        lengths[np.asarray(strings.is_null())] = 0
    return data, offsets[:-1], lengths


def fnv1a(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, reverse: bool = False) -> np.ndarray:
    """The FNV-1a hash of each string's bytes (last byte first when ``reverse``).

    Strings are grouped by length, so that each group is a plain matrix whose columns are
    hashed in turn without masks; work is one xor and one multiply per byte."""
    out = np.full(len(lengths), FNV_OFFSET, np.uint64)
    if len(lengths) == 0:
        return out
    # 16-bit keys sort by radix, in linear time
    keys = lengths.astype(np.uint16) if lengths.max() < 1 << 16 else lengths
    order = np.argsort(keys, kind="stable")
    sorted_lengths = lengths[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(sorted_lengths)) + 1, len(order)]
    for first, last in zip(bounds[:-1], bounds[1:]):
        length = int(sorted_lengths[first])
        if length == 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(data, length)
        step = max(1, _MATRIX_BYTES // length)
        for start in range(first, last, step):
            rows = order[start : min(start + step, last)]
            matrix = np.ascontiguousarray(windows[starts[rows]].T)  # (length, rows): a row per byte
            h = np.full(len(rows), FNV_OFFSET, np.uint64)
            for byte in matrix[::-1] if reverse else matrix:
                h ^= byte
                h *= FNV_PRIME
            out[rows] = h
    return out


def byte_matrix(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int, reverse: bool) -> np.ndarray:
    """(width, n) uint8: row j holds byte j of every string (counted from the end when
    ``reverse``), 0 past a string's end."""
    positions = np.arange(width, dtype=np.int64)[:, None]
    inside = positions < lengths[None, :]
    if reverse:
        index = (starts + lengths - 1)[None, :] - positions
    else:
        index = starts[None, :] + positions
    if len(data) == 0:
        return np.zeros((width, len(lengths)), np.uint8)
    return np.where(inside, data[np.clip(index, 0, len(data) - 1)], np.uint8(0))


def running_fnv1a(matrix: np.ndarray) -> np.ndarray:
    """(width, n) uint64: entry [j, i] is the FNV-1a hash of bytes 0..j of column i of a
    ``byte_matrix``; entries past a string's end are meaningless."""
    out = np.empty(matrix.shape, np.uint64)
    previous = np.full(matrix.shape[1], FNV_OFFSET, np.uint64)
    for j in range(matrix.shape[0]):
        np.bitwise_xor(previous, matrix[j], out=out[j])
        np.multiply(out[j], FNV_PRIME, out=out[j])
        previous = out[j]
    return out


def strings_fnv1a(strings: pa.Array | pa.ChunkedArray, reverse: bool = False) -> np.ndarray:
    """``fnv1a`` of every string of an Arrow array."""
    return fnv1a(*string_bytes(strings), reverse=reverse)
