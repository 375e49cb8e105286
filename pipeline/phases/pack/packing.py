"""Packing documents (token arrays, in their shuffled order) into fixed-length sequences.

``concat`` joins the documents (each ends with EOS when ``tokenize.add_eos``) into one
stream and cuts it into windows of ``seq_len``; only an output shard's last window may be
shorter. ``bestfit`` never splits a document of up to ``seq_len`` tokens: each goes into
the open sequence with the least room that still fits it (best fit), a new sequence when
none does; longer documents are cut into ``seq_len`` pieces and their remainder is placed
the same way (among sequences with equal room, the earliest opened). Sequences are padded to ``seq_len`` with ``pad_id`` and written in the
order they were opened, so the output keeps the shuffled order.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipeline.core.text_tokenizer import TextTokenizer


class PackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq_len: int = Field(2048, gt=0)
    """Tokens per packed sequence. Trainers that read seq_len + 1 tokens per sample
    (Megatron's GPTDataset, datatrove/nanotron) want this set to their length + 1."""
    mode: Literal["concat", "bestfit", "none"] = "concat"
    """``concat``: documents joined and cut into ``seq_len`` windows. ``bestfit``: whole
    documents placed into sequences (best fit), padded; in a chat job, whole conversations,
    longest first (best-fit decreasing), not padded. ``none`` (chat jobs): one conversation
    per sequence."""
    pad_id: int | None = Field(None, ge=0)
    """Padding token for ``bestfit``; unset uses the tokenizer's pad piece (a tokenizer
    without one, such as Llama's, needs this set, e.g. to its EOS id)."""
    format: Literal["megatron", "datatrove", "parquet"] = "megatron"
    """``megatron``: ``.bin`` + ``.idx`` indexed dataset; ``datatrove``: ``.ds`` +
    ``.ds.index`` + ``.ds.metadata``; ``parquet`` (chat jobs, and only they): one row per
    sequence with ``input_ids``, ``labels``, ``assistant_masks``, ``position_ids`` and
    ``seq_lengths`` (``pipeline.chat.packing``), as ``datasets`` and TRL load them."""
    shard_tokens: int = Field(50_000_000, gt=0)
    """Target tokens per output shard. Each pack worker holds about 10 bytes per token of
    one shard in memory."""

    def check_pad_id(self, tokenizer: TextTokenizer, tokenizer_uri: str) -> int:
        """The padding id for this tokenizer, or a ``ValueError`` naming the key to set."""
        if self.pad_id is not None:
            if self.pad_id >= tokenizer.vocab_size:
                raise ValueError(
                    f"stages.pack.pad_id: {self.pad_id} is not an id of the tokenizer ({tokenizer.vocab_size} tokens)"
                )
            return self.pad_id
        if self.mode == "bestfit" and tokenizer.pad_id < 0:
            raise ValueError(
                f"stages.pack.pad_id: the tokenizer '{tokenizer_uri}' has no pad token; set "
                f"pad_id for bestfit packing (for example to its EOS id, {tokenizer.eos_id})"
            )
        return max(tokenizer.pad_id, 0)


@dataclass
class Packed:
    """A packed token stream: ``tokens`` is every sequence back to back; ``sequence_lengths``
    their lengths; ``unit_ends`` the cumulative end of each run of one document (or of
    padding) in the stream, for formats that record document boundaries."""

    tokens: np.ndarray
    sequence_lengths: np.ndarray
    unit_ends: np.ndarray
    padding_tokens: int


def pack_concat(documents: list[np.ndarray], seq_len: int, dtype: np.dtype) -> Packed:
    tokens = np.concatenate(documents).astype(dtype, copy=False) if documents else np.zeros(0, dtype)
    full, rest = divmod(len(tokens), seq_len)
    lengths = np.full(full + (1 if rest else 0), seq_len, dtype=np.int64)
    if rest:
        lengths[-1] = rest
    ends = np.cumsum([len(d) for d in documents], dtype=np.int64)
    return Packed(tokens, lengths, ends[np.diff(np.concatenate([[0], ends])) > 0], 0)


def bestfit_bins(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best-fit placement of documents of the given lengths.

    Returns pieces as four arrays: sequence, document, offset in the document, length;
    sorted by (sequence, placement order). Sequences are numbered in the order opened.
    """
    piece_seq: list[int] = []
    piece_doc: list[int] = []
    piece_start: list[int] = []
    piece_len: list[int] = []
    room_values: list[int] = []  # sorted distinct room left among open sequences
    by_room: dict[int, list[int]] = {}  # room -> heap of open sequences with that room
    sequences = 0
    for doc, length in enumerate(lengths.tolist()):
        start = 0
        while length - start >= seq_len:
            piece_seq.append(sequences), piece_doc.append(doc), piece_start.append(start), piece_len.append(seq_len)
            sequences += 1
            start += seq_len
        size = length - start
        if size == 0:
            continue
        i = bisect.bisect_left(room_values, size)
        if i < len(room_values):
            room = room_values[i]
            stack = by_room[room]
            seq = heapq.heappop(stack)
            if not stack:
                del by_room[room]
                room_values.pop(i)
        else:
            room, seq = seq_len, sequences
            sequences += 1
        piece_seq.append(seq), piece_doc.append(doc), piece_start.append(start), piece_len.append(size)
        left = room - size
        if left:
            if left not in by_room:
                bisect.insort(room_values, left)
                by_room[left] = []
            heapq.heappush(by_room[left], seq)
    seq_arr = np.asarray(piece_seq, dtype=np.int64)
    order = np.argsort(seq_arr, kind="stable")
    return (
        seq_arr[order],
        np.asarray(piece_doc, dtype=np.int64)[order],
        np.asarray(piece_start, dtype=np.int64)[order],
        np.asarray(piece_len, dtype=np.int64)[order],
    )


def pack_bestfit(documents: list[np.ndarray], seq_len: int, pad_id: int, dtype: np.dtype) -> Packed:
    lengths = np.asarray([len(d) for d in documents], dtype=np.int64)
    seqs, docs, starts, sizes = bestfit_bins(lengths, seq_len)
    num_sequences = int(seqs[-1]) + 1 if len(seqs) else 0
    filled = np.bincount(seqs, weights=sizes, minlength=num_sequences).astype(np.int64)
    pads = seq_len - filled
    parts: list[np.ndarray] = []
    unit_lengths: list[int] = []
    pad_cache: dict[int, np.ndarray] = {}
    last = len(seqs) - 1
    for i, (seq, doc, start, size) in enumerate(zip(seqs.tolist(), docs.tolist(), starts.tolist(), sizes.tolist())):
        parts.append(documents[doc][start : start + size])
        unit_lengths.append(size)
        if i == last or seqs[i + 1] != seq:
            pad = int(pads[seq])
            if pad:
                if pad not in pad_cache:
                    pad_cache[pad] = np.full(pad, pad_id, dtype=dtype)
                parts.append(pad_cache[pad])
                unit_lengths.append(pad)
    tokens = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
    return Packed(
        tokens,
        np.full(num_sequences, seq_len, dtype=np.int64),
        np.cumsum(unit_lengths, dtype=np.int64),
        int(pads.sum()),
    )
