"""Tokenized conversations packed into sequences for fine-tuning, never split.

Placement is the pretraining pack phase's best fit (``pipeline.phases.pack.packing
.bestfit_bins``: each conversation goes to the open sequence with the least room that holds
it). Sequences are not padded (padding-free packing, as TRL's ``pack_dataset`` and
flash-attention's varlen kernels want them): each row holds

- ``input_ids``, and ``labels`` (``-100`` where the loss mask is off) and ``assistant_masks``
  (1 where it is on; TRL's ``assistant_only_loss`` reads this);
- ``position_ids`` restarting at 0 at each conversation, and ``seq_lengths``, the lengths of
  the conversations in it in order, so that attention can stay within a conversation.

``sort: decreasing`` places the longest conversations first (best-fit decreasing, TRL's
``bfd``), which fills sequences tighter; ``arrival`` keeps the order given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from pipeline.chat.masks import IGNORE_INDEX, TokenizedConversation
from pipeline.phases.pack.packing import bestfit_bins

SFT_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("labels", pa.list_(pa.int32())),
        pa.field("assistant_masks", pa.list_(pa.int8())),
        pa.field("position_ids", pa.list_(pa.int32())),
        pa.field("seq_lengths", pa.list_(pa.int32())),
    ]
)


class ConversationTooLong(ValueError):
    """A conversation longer than the sequence length: packing never splits one."""


@dataclass
class PackedConversations:
    conversations: list[TokenizedConversation]
    order: np.ndarray
    """The conversations' indices in sequence order."""
    bounds: np.ndarray
    """Sequence ``i`` holds ``order[bounds[i]:bounds[i + 1]]``."""
    tokens: int
    seq_len: int

    @property
    def num_sequences(self) -> int:
        return len(self.bounds) - 1

    @property
    def members(self) -> list[list[int]]:
        """The conversations (indices into the input) of each sequence, in order."""
        return [self.order[a:b].tolist() for a, b in zip(self.bounds[:-1], self.bounds[1:])]

    @property
    def efficiency(self) -> float:
        """Tokens over sequences x seq_len: how full the sequences are."""
        return self.tokens / (self.num_sequences * self.seq_len) if self.num_sequences else 0.0

    @property
    def table(self) -> pa.Table:
        """One row per sequence, ``SFT_SCHEMA``."""
        return pa.concat_tables([SFT_SCHEMA.empty_table(), *self.tables(1024)])

    def tables(self, sequences: int) -> Iterator[pa.Table]:
        """The rows, ``sequences`` at a time: a shard is written one row group at a time
        rather than built whole (its columns take 13 bytes per token)."""
        for first in range(0, self.num_sequences, sequences):
            yield self._rows(first, min(first + sequences, self.num_sequences))

    def _rows(self, first: int, last: int) -> pa.Table:
        bounds = self.bounds[first : last + 1]
        docs = self.order[bounds[0] : bounds[-1]].tolist()
        bounds = bounds - bounds[0]
        # each column built flat, in sequence order, and cut into rows by offsets: one copy of
        # the tokens per column, no per-row arrays
        ids = np.concatenate([self.conversations[i].input_ids for i in docs], dtype=np.int32)
        trained = np.concatenate([self.conversations[i].trained for i in docs]).astype(bool, copy=False)
        sizes = np.array([len(self.conversations[i].input_ids) for i in docs], np.int64)
        ends = np.cumsum(sizes)
        positions = np.arange(len(ids), dtype=np.int32)
        positions -= np.repeat((ends - sizes).astype(np.int32), sizes)
        rows = np.r_[0, ends][bounds].astype(np.int32)

        def rows_of(values: np.ndarray) -> pa.ListArray:
            return pa.ListArray.from_arrays(pa.array(rows), pa.array(values))

        return pa.table(
            {
                "input_ids": rows_of(ids),
                "labels": rows_of(np.where(trained, ids, np.int32(IGNORE_INDEX))),
                "assistant_masks": rows_of(trained.astype(np.int8)),
                "position_ids": rows_of(positions),
                "seq_lengths": pa.ListArray.from_arrays(
                    pa.array(bounds.astype(np.int32)), pa.array(sizes.astype(np.int32))
                ),
            },
            schema=SFT_SCHEMA,
        )


def pack_conversations(
    conversations: list[TokenizedConversation],
    seq_len: int,
    sort: Literal["arrival", "decreasing"] = "decreasing",
    packed: bool = True,
) -> PackedConversations:
    """Best-fit packed sequences, or (``packed=False``) one conversation per sequence in the order given."""
    lengths = np.array([len(c.input_ids) for c in conversations], np.int64)
    too_long = np.flatnonzero(lengths > seq_len)
    if len(too_long):
        raise ConversationTooLong(
            f"{len(too_long)} conversations are longer than seq_len {seq_len} (the first: {int(lengths[too_long[0]])} "
            "tokens); reject or truncate them before packing"
        )
    if not conversations:
        return PackedConversations([], np.zeros(0, np.int64), np.zeros(1, np.int64), 0, seq_len)
    if np.any(lengths == 0):
        raise ValueError(f"conversation {int(np.flatnonzero(lengths == 0)[0])} has no tokens: nothing to pack")
    if packed:
        order = np.argsort(-lengths, kind="stable") if sort == "decreasing" else np.arange(len(lengths))
        seqs, docs, _, _ = bestfit_bins(lengths[order], seq_len)
        docs = order[docs]
    else:
        seqs = docs = np.arange(len(lengths))
    bounds = np.flatnonzero(np.r_[True, seqs[1:] != seqs[:-1], True])
    return PackedConversations(conversations, docs, bounds, int(lengths.sum()), seq_len)
