"""Vectorized MinHash signatures, bit-identical to ``datasketch.MinHash`` (scheme
``affine32``) fed the same shingles with ``hashfunc=shingle_hash``.

A shingle is ``n`` consecutive units (words, or characters) of the normalized text.
Each unit gets a 64-bit blake2b hash (computed once per distinct unit in a batch); a
shingle's hash is a polynomial over its units' hashes, folded to 32 bits. Because that
hash is built from unit hashes, every shingle hash of a whole batch comes out of a few
numpy operations, and the permutations and minimum run as uint32 matrix operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.core.ngrams import MULTIPLIERS, ngram_hashes, unit_hash, unit_hashes

_FMIX32 = (16, np.uint32(0x85EBCA6B), 13, np.uint32(0xC2B2AE35), 16)
MAX_HASH = np.uint32(0xFFFFFFFF)
_CHUNK_SHINGLES = 4096


def shingle_hash(shingle: Sequence[str]) -> int:
    """The 32-bit hash of one shingle (a sequence of units); the reference for the vectorized path."""
    with np.errstate(over="ignore"):
        units = np.array([unit_hash(u) for u in shingle], dtype=np.uint64)
        combined = np.sum(units * MULTIPLIERS[: len(units)], dtype=np.uint64)
    return int(_fold32(np.array([combined], dtype=np.uint64))[0])


def _fold32(values: np.ndarray) -> np.ndarray:
    return ((values ^ (values >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> np.uint32(s1))
    h = h * m1
    h = h ^ (h >> np.uint32(s2))
    h = h * m2
    return h ^ (h >> np.uint32(s3))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters for (num_perm, seed)."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@dataclass(frozen=True)
class Shingling:
    ngram: int = 5
    unit: str = "word"  # or "char"


def shingle_hashes(units: pa.ListArray, shingling: Shingling) -> tuple[np.ndarray, np.ndarray]:
    """32-bit shingle hashes of every document, flat, and each document's shingle count.

    ``units`` holds each document's units (words or characters) in order. A document with
    fewer units than ``ngram`` but at least one yields one shingle of all its units.
    """
    n = shingling.ngram
    offsets = units.offsets.to_numpy().astype(np.int64)
    counts = np.diff(offsets)
    ndocs = len(counts)
    hashes = unit_hashes(units)
    if len(hashes) == 0:
        return np.zeros(0, np.uint32), np.zeros(ndocs, np.int64)
    full_values, full_docs, _ = ngram_hashes(units, n, hashes)
    docs = [full_docs]
    values = [full_values]
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):
        with np.errstate(over="ignore"):
            short_values = [
                np.sum(hashes[offsets[d] : offsets[d] + counts[d]] * MULTIPLIERS[: counts[d]], dtype=np.uint64)
                for d in short
            ]
        docs.append(short)
        values.append(np.array(short_values, dtype=np.uint64))
    all_docs = np.concatenate(docs)
    order = np.argsort(all_docs, kind="stable")
    return _fold32(np.concatenate(values)[order]), np.bincount(all_docs, minlength=ndocs).astype(np.int64)


def signatures(shingles: np.ndarray, shingle_counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(documents, num_perm) uint32 MinHash values; documents without shingles keep MAX_HASH."""
    a, b = permutations(num_perm, seed)
    out = np.full((len(shingle_counts), num_perm), MAX_HASH, dtype=np.uint32)
    if len(shingles) == 0:
        return out
    mixed = _fmix32(shingles.astype(np.uint32))
    doc_of_shingle = np.repeat(np.arange(len(shingle_counts)), shingle_counts)
    a_col, b_col = a[:, None], b[:, None]
    with np.errstate(over="ignore"):
        for start in range(0, len(mixed), _CHUNK_SHINGLES):
            chunk = mixed[start : start + _CHUNK_SHINGLES]
            docs = doc_of_shingle[start : start + _CHUNK_SHINGLES]
            # (num_perm, shingles): the reduction then runs along contiguous memory
            values = chunk[None, :] * a_col + b_col
            boundaries = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            minima = np.minimum.reduceat(values, boundaries, axis=1).T
            owners = docs[boundaries]
            out[owners] = np.minimum(out[owners], minima)
    return out
