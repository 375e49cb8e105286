"""A reader of datatrove's tokenized files written from the format description alone
(datatrove/pipeline/tokens/tokenizer.py: TokenizedFile), independent of pipeline.formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_datatrove(path: Path | str) -> dict:
    path = str(path)
    first, count, humanized = Path(f"{path}.metadata").read_text().split("\n")
    tokenizer, token_size = first.rsplit("|", 1)
    token_size = int(token_size)
    tokens = np.fromfile(path, dtype={2: "<u2", 4: "<u4"}[token_size])
    ends = np.fromfile(f"{path}.index", dtype="<u8")
    return {
        "tokenizer": tokenizer,
        "token_size": token_size,
        "token_count": int(count),
        "humanized": humanized,
        "tokens": tokens,
        "ends": ends,
        "units": np.split(tokens, ends[:-1].astype(np.int64)) if len(ends) else [],
    }
