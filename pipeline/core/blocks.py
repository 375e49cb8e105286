"""Block counts sized to the data.

Ray Data's sort makes as many output blocks as it gets input blocks, and every block
costs tasks and objects in each later shuffle. Small intermediate datasets (edges,
fetched rows) inherit block counts from much larger ones, so they are coalesced before
their shuffles, and large ones are cut so that one block never holds much of the data.

The count ``M`` for ``S`` bytes weighs two costs. A task's memory grows with its block
(a step over a block of sorted dedup keys holds a few copies of it), so blocks aim at
``BLOCK_BYTES``. But a pull-based sort of M blocks returns M x M pieces, and a piece under
Ray's 100 KB inline limit is returned into its owner's, the driver's, own memory: sorting
1M rows of dedup keys straight from 128 small annotated shards left ~300 MB in the driver
(16k pieces). So M stays at or below sqrt(S / ``MIN_PIECE_BYTES``), and blocks grow as the
square root of the data past that point (9 MB blocks for 320 MB, 29 MB for 3.2 GB); and
at least two blocks per CPU, whatever the size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ray.data

BLOCK_BYTES = 8 * 1024 * 1024
MIN_PIECE_BYTES = 256 * 1024


def block_count(size_bytes: int, cpus: int) -> int:
    """How many blocks ``size_bytes`` of data should be in before a shuffle."""
    by_size = math.ceil(size_bytes / BLOCK_BYTES)
    by_pieces = math.isqrt(size_bytes // MIN_PIECE_BYTES)
    return max(2 * cpus, min(by_size, by_pieces))


def right_sized(dataset: ray.data.Dataset) -> ray.data.Dataset:
    """``dataset`` materialized, its blocks merged if they are many and small, or cut if
    they are few and large."""
    import ray

    dataset = dataset.materialize()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = dataset.size_bytes()
    target = block_count(size, cpus)
    blocks = dataset.num_blocks()
    too_large = size / max(1, blocks) > max(2 * size / target, 2 * BLOCK_BYTES)
    if blocks <= target and not too_large:
        return dataset
    return dataset.repartition(target).materialize()


def sorted_by(dataset: ray.data.Dataset, key: str | list[str]) -> ray.data.Dataset:
    """``dataset.sort(key)`` after sizing its blocks (see the module's note)."""
    return right_sized(dataset).sort(key)
