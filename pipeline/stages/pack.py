"""Packing token streams into fixed-length sequences."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq_len: int = Field(2048, gt=0)
    """Tokens per packed sequence."""
    mode: Literal["concat"] = "concat"
    """``concat``: documents joined (each ends with EOS when tokenize.add_eos) and cut into
    windows of ``seq_len``; the last window of a shard may be shorter."""
    format: Literal["megatron"] = "megatron"


def concat_window_lengths(total_tokens: int, seq_len: int) -> np.ndarray:
    """Lengths of the ``seq_len`` windows cut from a stream of ``total_tokens`` tokens."""
    full, rest = divmod(total_tokens, seq_len)
    lengths = np.full(full + (1 if rest else 0), seq_len, dtype=np.int32)
    if rest:
        lengths[-1] = rest
    return lengths
