"""Packing: concat windows, and best-fit held against a brute-force reference."""

import numpy as np
import pytest

from pipeline.phases.pack.packing import bestfit_bins, pack_bestfit, pack_concat

DT = np.dtype(np.uint16)


def _docs(lengths, start=1):
    docs, next_id = [], start
    for n in lengths:
        docs.append(np.arange(next_id, next_id + n, dtype=DT) % 60000 + 4)
        next_id += n
    return docs


def test_concat_cuts_one_stream_into_windows():
    docs = _docs([3, 5, 4])
    packed = pack_concat(docs, 4, DT)
    assert packed.tokens.tolist() == np.concatenate(docs).tolist()
    assert packed.sequence_lengths.tolist() == [4, 4, 4]
    assert packed.unit_ends.tolist() == [3, 8, 12] and packed.padding_tokens == 0
    assert pack_concat(_docs([3, 2]), 4, DT).sequence_lengths.tolist() == [4, 1]
    assert pack_concat([], 4, DT).sequence_lengths.tolist() == []


def reference_bestfit(lengths, seq_len):
    """Written from the definition: split off full windows of long documents, then put each
    remainder in the open sequence with the least room that fits (earliest opened among
    equals), else open a new one."""
    rooms, pieces = [], []
    for doc, n in enumerate(lengths):
        while n >= seq_len:
            rooms.append(0)
            pieces.append((len(rooms) - 1, doc, seq_len))
            n -= seq_len
        if n == 0:
            continue
        fits = [(room, seq) for seq, room in enumerate(rooms) if room >= n]
        if fits:
            seq = min(fits)[1]
        else:
            rooms.append(seq_len)
            seq = len(rooms) - 1
        rooms[seq] -= n
        pieces.append((seq, doc, n))
    return rooms, pieces


@pytest.mark.parametrize("seed", range(5))
def test_bestfit_matches_the_reference_and_never_splits_short_documents(seed):
    rng = np.random.default_rng(seed)
    seq_len = 64
    lengths = np.concatenate([rng.integers(1, 70, 300), rng.integers(100, 300, 10)])
    rng.shuffle(lengths)
    seqs, docs, starts, sizes = bestfit_bins(lengths, seq_len)
    rooms, pieces = reference_bestfit(lengths.tolist(), seq_len)
    assert sorted(zip(seqs.tolist(), docs.tolist(), sizes.tolist())) == sorted(pieces)
    for doc, n in enumerate(lengths.tolist()):
        mine = sizes[docs == doc]
        assert mine.sum() == n
        if n <= seq_len:
            assert len(mine) == 1  # never split
    # a sequence's pieces come in order and sequences are numbered by opening order
    assert np.all(np.diff(seqs) >= 0)
    first_doc_of_seq = [docs[seqs == s].min() for s in range(seqs.max() + 1)]
    assert first_doc_of_seq == sorted(first_doc_of_seq)

    documents = _docs(lengths.tolist())
    packed = pack_bestfit(documents, seq_len, pad_id=3, dtype=DT)
    assert np.all(packed.sequence_lengths == seq_len)
    assert len(packed.tokens) == seq_len * len(rooms)
    assert packed.padding_tokens == sum(rooms) == int(np.sum(packed.tokens == 3))
    text = packed.tokens[packed.tokens != 3]
    assert sorted(text.tolist()) == sorted(np.concatenate(documents).tolist())
    assert packed.unit_ends[-1] == len(packed.tokens)


def test_bestfit_fills_the_tightest_gap():
    # 50 opens seq 0 (room 14), 40 opens seq 1 (room 24); 12 fits both and goes to seq 0.
    seqs, docs, _, _ = bestfit_bins(np.array([50, 40, 12, 20]), 64)
    assert list(zip(docs.tolist(), seqs.tolist())) == [(0, 0), (2, 0), (1, 1), (3, 1)]
