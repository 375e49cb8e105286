"""Near-duplicate removal: MinHash signatures (annotate), LSH banding, star edges per
bucket, distributed connected components, one survivor per component (dedup phase). Each
removed document records its survivor and the verified edge that links it into the
component (``links``), or, with ``transitive: false``, is removed only when it matches
the survivor itself.

Normalization before shingling: NFKC, lowercase, every run of characters that are not
letters, digits or marks becomes a space, then split on whitespace (word shingles) or
whitespace folded to single spaces (character shingles).

Defaults: Jaccard threshold 0.8 with 128 permutations, as in the deduplication of
Gopher/RefinedWeb-style web corpora. 128 values keep a signature at 512 bytes while the
banded S-curve still separates 0.7 from 0.9 similarity sharply (see the run report).
Banding leans towards recall and every candidate edge is checked against the true
Jaccard similarity of the shingle sets, which measured precision 1.0 and recall 0.98 on
planted Wikipedia near duplicates (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.near_dedup.minhash import Shingling, shingle_hashes, signatures

MINHASH = "minhash"
LSH_BANDS = "lsh_bands"
SHINGLES = "shingle_hashes"
UNIT_COUNT = "dedup_units"
_NON_WORD = r"[^\p{L}\p{N}\p{M}\s]+"


def dedup_units(text: pa.Array, unit: str) -> pa.Array:
    """Per document, its words (``word``) or characters (``char``) after normalization; a
    document of only punctuation and spaces has none."""
    normalized = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_normalize(text, "NFKC")), _NON_WORD, " ")
    if unit == "char":
        return pa.array([list(" ".join(t.split())) for t in normalized.to_pylist()], pa.list_(pa.string()))
    words = pc.utf8_split_whitespace(normalized)
    flat = words.flatten()
    real = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(words).to_numpy()[real]
    offsets = np.r_[0, np.cumsum(np.bincount(parents, minlength=len(words)))].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(real)))


class MinHashSignatures(DocumentStage):
    """Adds ``lsh_bands``: the document's LSH band keys, null when it has no shingles, and
    what verification needs: ``minhash`` (the signature) or ``shingle_hashes``."""

    name = "near_dedup"
    internal_columns = (MINHASH, LSH_BANDS, SHINGLES, UNIT_COUNT)

    def process(self, docs: pa.Table) -> StageOutput:
        c = self.config
        units = dedup_units(cols.dedup_text(docs).combine_chunks(), c.shingle_unit)
        hashes, counts = shingle_hashes(units, Shingling(c.ngram, c.shingle_unit))
        values = signatures(hashes, counts, c.num_perm, c.seed)
        no_shingles = pa.array(counts == 0)
        bands, rows = c.banding()
        keys = band_keys(values, bands, rows)
        docs = docs.append_column(
            LSH_BANDS,
            pa.ListArray.from_arrays(
                pa.array(np.arange(len(counts) + 1, dtype=np.int32) * bands), pa.array(keys.ravel()), mask=no_shingles
            ),
        )
        docs = docs.append_column(UNIT_COUNT, pa.array(pc.list_value_length(units).fill_null(0), pa.int32()))
        if c.verify == "signature":
            docs = docs.append_column(
                MINHASH,
                pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.uint32()), c.num_perm, mask=no_shingles),
            )
        if c.verify == "shingles":
            docs = docs.append_column(SHINGLES, _distinct_per_document(hashes, counts))
        return StageOutput(docs)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) int64: a 64-bit mix of each band's ``rows`` signature values and
    the band's number, so equal keys mean an equal band in the same position."""
    values = signatures.astype(np.uint64)
    keys = np.empty((len(values), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            mixed = np.full(len(values), np.uint64(band) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for column in range(band * rows, (band + 1) * rows):
                mixed = (mixed ^ values[:, column]) * np.uint64(0x9E3779B97F4A7C15)
            keys[:, band] = mixed ^ (mixed >> np.uint64(29))
    return keys.view(np.int64)


def _distinct_per_document(hashes: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    """Each document's distinct shingle hashes, ascending. One sort of 64-bit (document,
    hash) keys: 4x faster than a two-key lexsort, the same order."""
    doc = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
    keys = np.sort((doc << np.uint64(32)) | hashes.astype(np.uint64))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    per_document = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(counts))
    offsets = np.r_[0, np.cumsum(per_document)].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)))
