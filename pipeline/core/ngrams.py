"""Word n-gram hashes: a 64-bit blake2b hash per distinct unit, and per n-gram a
polynomial over its units' hashes, computed for a whole batch with a few numpy operations.
Near dedup shingles and the contamination index are built from them."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Odd 64-bit multipliers for unit position j in an n-gram: MULTIPLIERS[j] = P ** j.
_P = 0x9E3779B97F4A7C15
MAX_NGRAM = 64
MULTIPLIERS = np.array([pow(_P, j, 1 << 64) for j in range(MAX_NGRAM)], dtype=np.uint64)


def unit_hash(unit: str) -> int:
    return int.from_bytes(hashlib.blake2b(unit.encode("utf-8"), digest_size=8).digest(), "little")


def unit_hashes(units: pa.ListArray) -> np.ndarray:
    """64-bit hash of every unit, flat (each distinct unit hashed once)."""
    flat = units.flatten()
    if len(flat) == 0:
        return np.zeros(0, np.uint64)
    encoded = (
        pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else pc.dictionary_encode(flat)
    )
    distinct = np.array([unit_hash(u) for u in encoded.dictionary.to_pylist()], dtype=np.uint64)
    return distinct[encoded.indices.to_numpy()]


def ngram_hashes(
    units: pa.ListArray, n: int, hashes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every full n-gram of every document: its 64-bit hash (a polynomial over its units'
    hashes), its document and the position of its first unit. Documents with fewer than
    ``n`` units have none. ``hashes``: ``unit_hashes(units)``, if already computed."""
    offsets = units.offsets.to_numpy().astype(np.int64)
    counts = np.diff(offsets)
    hashes = unit_hashes(units) if hashes is None else hashes
    total = len(hashes)
    with np.errstate(over="ignore"):
        window = np.zeros(total, dtype=np.uint64)
        for j in range(min(n, total)):
            # position k gets unit k+j; positions past the end are discarded below
            window[: total - j] += hashes[j:] * MULTIPLIERS[j]
    doc_of_unit = np.repeat(np.arange(len(counts)), counts)
    position_in_doc = np.arange(total) - offsets[:-1][doc_of_unit]
    full_window = position_in_doc < (counts - n + 1)[doc_of_unit]
    return window[full_window], doc_of_unit[full_window], position_in_doc[full_window]


_NON_WORD = r"[^\p{L}\p{N}\p{M}\s]+"


def words(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Each text's normalized words: lower case, runs of letters, digits and marks."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    split = pc.utf8_split_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _NON_WORD, " "))
    flat = split.flatten()
    real = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(split).to_numpy()[real]
    offsets = np.r_[0, np.cumsum(np.bincount(parents, minlength=len(split)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(real)))
