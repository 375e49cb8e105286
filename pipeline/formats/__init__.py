"""Token shard formats: which files a shard has, how packed tokens become their bytes,
and how ``refinery inspect`` reads them back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.formats import datatrove, megatron, sft
from pipeline.phases.pack.packing import Packed

FILE_ROLES = {
    "megatron": {"bin": ".bin", "idx": ".idx"},
    "datatrove": {"ds": ".ds", "index": ".ds.index", "metadata": ".ds.metadata"},
    "parquet": {"parquet": ".parquet"},
}


def token_dtype(fmt: str, vocab_size: int) -> np.dtype:
    if fmt == "parquet":  # SFT rows: int32 lists, as trainers' collators take them
        return np.dtype("<i4")
    return megatron.token_dtype(vocab_size) if fmt == "megatron" else datatrove.token_dtype(vocab_size)


def shard_files(fmt: str, stem: str) -> dict[str, str]:
    """Role -> path (relative to the output root) of each file of shard ``stem``."""
    return {role: f"{stem}{suffix}" for role, suffix in FILE_ROLES[fmt].items()}


def encode_shard(fmt: str, packed: Packed, dtype: np.dtype, tokenizer_name: str) -> dict[str, bytes | memoryview]:
    """Each file's bytes; the token file as a view of the packed tokens, not a copy."""
    tokens = memoryview(np.ascontiguousarray(packed.tokens, dtype=dtype)).cast("B")
    if fmt == "megatron":
        # Each packed sequence is one Megatron "document": the document index is 0..n.
        n = len(packed.sequence_lengths)
        return {
            "bin": tokens,
            "idx": megatron.encode_index(dtype, packed.sequence_lengths, np.arange(n + 1, dtype=np.int64)),
        }
    return {
        "ds": tokens,
        "index": datatrove.encode_index(packed.unit_ends),
        "metadata": datatrove.encode_metadata(tokenizer_name, dtype.itemsize, len(packed.tokens)),
    }


@dataclass
class DecodedShard:
    tokens: np.ndarray
    sequence_lengths: np.ndarray | None
    """Per-sequence lengths where the format records them (Megatron)."""
    problems: list[str]


def decode_shard(fmt: str, files: dict[str, bytes]) -> DecodedShard:
    """Parse a shard and check that its files agree with each other."""
    problems: list[str] = []
    if fmt == "parquet":
        tokens, lengths, problems = sft.decode(files["parquet"])
        return DecodedShard(tokens, lengths, problems)
    if fmt == "megatron":
        dataset = megatron.decode(files["idx"], files["bin"])
        lengths = np.asarray(dataset.sequence_lengths, dtype=np.int64)
        if int(lengths.sum()) * dataset.dtype.itemsize != len(files["bin"]):
            problems.append("idx sequence lengths do not add up to the bin size")
        return DecodedShard(dataset.tokens, lengths, problems)
    token_file = datatrove.decode(files["ds"], files["index"], files["metadata"])
    if token_file.token_count != len(token_file.tokens):
        problems.append("metadata token count differs from the .ds size")
    if len(token_file.unit_ends) and int(token_file.unit_ends[-1]) != len(token_file.tokens):
        problems.append("index does not end at the last token")
    if np.any(np.diff(token_file.unit_ends.astype(np.int64)) <= 0):
        problems.append("index is not strictly increasing")
    return DecodedShard(token_file.tokens, None, problems)
