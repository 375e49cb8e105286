"""Vectorized signatures equal datasketch.MinHash fed the same shingles, bit for bit, and
the shingle hash is the documented polynomial, computed here independently."""

import hashlib

import datasketch
import numpy as np
import pyarrow as pa
import pytest

from pipeline.stages.near_dedup.minhash import MAX_HASH, Shingling, shingle_hash, shingle_hashes, signatures
from pipeline.tools.sample import build_sample_documents


def reference(units, n, num_perm, seed):
    shingles = (
        [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
        if len(units) >= n
        else ([tuple(units)] if units else [])
    )
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash, scheme="affine32")
    m.update_batch(shingles)
    return m.hashvalues


def independent_shingle_hash(shingle) -> int:
    """blake2b-64 of each unit (little-endian), sum of unit j's hash times P**j mod 2**64, the
    two halves XORed: written from the module's description, in Python integers."""
    p, modulus = 0x9E3779B97F4A7C15, 1 << 64
    units = [int.from_bytes(hashlib.blake2b(u.encode("utf-8"), digest_size=8).digest(), "little") for u in shingle]
    total = sum(h * pow(p, j, modulus) for j, h in enumerate(units)) % modulus
    return (total ^ (total >> 32)) & 0xFFFFFFFF


def test_shingle_hashes_are_the_documented_polynomial():
    rows, _ = build_sample_documents(30, seed=5)
    docs = [r["text"].lower().split() for r in rows] + [["solo"], ["two", "words"], ["ünï", "日本", "🙂", "x"]]
    hashes, counts = shingle_hashes(pa.array(docs, pa.list_(pa.string())), Shingling(4))
    expected = []
    for units in docs:
        shingles = [units[i : i + 4] for i in range(len(units) - 3)] if len(units) >= 4 else [units]
        expected += [independent_shingle_hash(s) for s in shingles]
        assert all(shingle_hash(s) == independent_shingle_hash(s) for s in shingles[:5])
    assert hashes.tolist() == expected and counts.sum() == len(expected)


@pytest.mark.parametrize("n,num_perm,seed", [(5, 128, 1), (3, 64, 42), (1, 16, 7)])
def test_word_shingles_bit_identical(n, num_perm, seed):
    rows, _ = build_sample_documents(60, seed=2)
    docs = [r["text"].lower().split() for r in rows] + [[], ["solo"], ["two", "words"]]
    hashes, counts = shingle_hashes(pa.array(docs, pa.list_(pa.string())), Shingling(n))
    got = signatures(hashes, counts, num_perm, seed)
    for units, signature in zip(docs, got):
        assert np.array_equal(signature, reference(units, n, num_perm, seed))


def test_char_shingles_bit_identical():
    docs = [list("the same text in characters"), list("日本語のテキスト"), list("ab")]
    hashes, counts = shingle_hashes(pa.array(docs, pa.list_(pa.string())), Shingling(5, "char"))
    got = signatures(hashes, counts, 32, 3)
    for units, signature in zip(docs, got):
        assert np.array_equal(signature, reference(units, 5, 32, 3))


def test_batch_shorter_than_one_shingle():
    docs = [["valid", "bytes"]]
    hashes, counts = shingle_hashes(pa.array(docs, pa.list_(pa.string())), Shingling(5))
    assert np.array_equal(signatures(hashes, counts, 16, 1)[0], reference(docs[0], 5, 16, 1))


def test_empty_document_has_no_shingles_and_max_signature():
    hashes, counts = shingle_hashes(pa.array([[], []], pa.list_(pa.string())), Shingling(5))
    assert counts.tolist() == [0, 0] and len(hashes) == 0
    assert (signatures(hashes, counts, 8, 1) == MAX_HASH).all()


def test_similar_documents_have_similar_signatures():
    words = [f"w{i}" for i in range(120)]
    edited = list(words)
    edited[50] = "changed"
    docs = [words, edited, list(reversed(words))]
    hashes, counts = shingle_hashes(pa.array(docs, pa.list_(pa.string())), Shingling(5))
    sig = signatures(hashes, counts, 256, 1)
    true_jaccard = 111 / 121  # 116 shingles each, 5 of them changed
    assert abs(np.mean(sig[0] == sig[1]) - true_jaccard) < 0.08
    assert np.mean(sig[0] == sig[2]) < 0.2


def test_punctuation_and_spaces_are_not_words():
    from pipeline.core import columns as cols
    from pipeline.stages.near_dedup import LSH_BANDS, MinHashSignatures, NearDedupConfig, dedup_units

    texts = ["  Hello, world! ", "*** ###", "", "a  b\tc"]
    assert dedup_units(pa.array(texts), "word").to_pylist() == [["hello", "world"], [], [], ["a", "b", "c"]]
    stage = MinHashSignatures(NearDedupConfig(ngram=2))
    bands = stage.process(pa.table({cols.TEXT: texts})).table.column(LSH_BANDS).to_pylist()
    assert [b is None for b in bands] == [False, True, True, False]
    assert len(bands[0]) == NearDedupConfig(ngram=2).banding()[0]


def test_distinct_shingles_per_document_are_each_documents_sorted_set():
    from pipeline.stages.near_dedup.stage import _distinct_per_document

    rng = np.random.default_rng(4)
    for trial in range(20):
        counts = rng.integers(0, 40, rng.integers(0, 60))
        high = 2**32 if trial % 2 else 12  # wide hashes, or many repeats within a document
        hashes = rng.integers(0, high, counts.sum(), dtype=np.uint64).astype(np.uint32)
        got = _distinct_per_document(hashes, counts).to_pylist()
        starts = np.r_[0, np.cumsum(counts)]
        assert got == [sorted(set(hashes[a:b].tolist())) for a, b in zip(starts[:-1], starts[1:])]
