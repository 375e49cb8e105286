"""Documents as the annotate phase hands them to stages, for tests that call a stage directly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.core import columns as cols


def docs_table(texts: list[str], id_prefix: str = "d") -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            cols.ID: [f"{id_prefix}{i}" for i in range(n)],
            cols.TEXT: texts,
            cols.DOMAIN: pa.nulls(n, pa.string()),
            cols.URL: pa.nulls(n, pa.string()),
            cols.SHARD: ["s"] * n,
            cols.ROW: list(range(n)),
            cols.TEXT_BYTES: [len(t.encode()) for t in texts],
        },
        schema=cols.BASE_SCHEMA,
    )


def token_documents(vocab: int, seed: int = 0, longest: int = 40) -> list[np.ndarray]:
    """60 documents of random token ids (at least 4, below ``vocab``), 1 to ``longest`` long."""
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab, rng.integers(1, longest + 1)).astype(np.int64) for _ in range(60)]
