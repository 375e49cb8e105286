"""A one-hash Bloom filter over sorted 64-bit hashes, as uint64 words: the cheap test in
front of an exact ``searchsorted`` lookup, which most looked-up values stop at."""

from __future__ import annotations

import numpy as np


def bitmap_of(hashes: np.ndarray, bits_per_hash: int = 16) -> np.ndarray:
    """A one-hash Bloom filter of sorted ``hashes``: 2^k bits, at least ``bits_per_hash`` per
    hash, bit ``h >> (64 - k)`` set for each; so a hash that is not among them passes with
    probability about 1 / ``bits_per_hash``."""
    bits = max(6, int(np.ceil(np.log2(max(len(hashes), 1) * bits_per_hash))))
    bitmap = np.zeros(1 << (bits - 6), np.uint64)
    if len(hashes):
        slots = hashes >> np.uint64(64 - bits)  # sorted, as the hashes are
        words = slots >> np.uint64(6)
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        bitmap[words[starts]] = np.bitwise_or.reduceat(np.uint64(1) << (slots & np.uint64(63)), starts)
    return bitmap


def in_bitmap(bitmap: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which ``values`` may be among the hashes ``bitmap`` was made of (never a false no)."""
    bits = (len(bitmap) - 1).bit_length() + 6
    slots = values >> np.uint64(64 - bits)
    return ((bitmap[slots >> np.uint64(6)] >> (slots & np.uint64(63))) & np.uint64(1)).astype(bool)
