"""datatrove's tokenized format (``DocumentTokenizer`` / ``DatatroveFolderDataset``):

``NAME.ds``: the tokens back to back, little-endian, 2 bytes each (uint16) or 4 (uint32).
``NAME.ds.index``: little-endian uint64, the cumulative end (in tokens) of each document.
``NAME.ds.metadata``: three text lines: ``<tokenizer>|<token size>``, the token count, and
the count in humanized form (``1.23 MT``, as ``humanize.metric(n, unit="T")`` writes it).

Refinery writes one index entry per run of one document in the stream and, for
``bestfit``, one per run of padding, so a reader can tell padding from text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size < 65536 else np.dtype("<u4")


def humanized(count: int) -> str:
    """``humanize.metric(count, unit="T")``: three significant digits and an SI prefix."""
    if count == 0:
        return "0.00 T"
    rounded = float(f"{count:.3g}")
    exponent = int(math.floor(math.log10(rounded)))
    value = rounded / 10 ** (exponent // 3 * 3)
    return f"{value:.{2 - exponent % 3}f} {['', 'k', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'][exponent // 3]}T"


def encode_index(unit_ends: np.ndarray) -> bytes:
    return np.asarray(unit_ends, dtype="<u8").tobytes()


def encode_metadata(tokenizer_name: str, token_size: int, token_count: int) -> bytes:
    return f"{tokenizer_name}|{token_size}\n{token_count}\n{humanized(token_count)}".encode()


@dataclass
class TokenFile:
    tokens: np.ndarray
    unit_ends: np.ndarray
    tokenizer: str
    token_size: int
    token_count: int


def decode(ds: bytes, index: bytes, metadata: bytes) -> TokenFile:
    first, count, _ = metadata.decode().split("\n")
    tokenizer, _, size = first.rpartition("|")
    token_size = int(size)
    if token_size not in (2, 4):
        raise ValueError(f"unsupported token size {token_size}")
    tokens = np.frombuffer(ds, dtype="<u2" if token_size == 2 else "<u4")
    return TokenFile(tokens, np.frombuffer(index, dtype="<u8"), tokenizer, token_size, int(count))
