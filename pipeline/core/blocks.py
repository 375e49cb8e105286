"""Block counts sized to the data.

Ray Data's sort makes as many output blocks as it gets input blocks, and every block
costs tasks and objects in each later shuffle. Small intermediate datasets (edges,
fetched rows) inherit block counts from much larger ones, so they are coalesced before
their shuffles: blocks of up to ``TARGET_BLOCK_BYTES``, at least two per CPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ray.data

TARGET_BLOCK_BYTES = 64 * 1024 * 1024


def right_sized(dataset: ray.data.Dataset) -> ray.data.Dataset:
    """``dataset`` materialized, its blocks merged if they are many and small."""
    import ray

    dataset = dataset.materialize()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    target = max(2 * cpus, math.ceil(dataset.size_bytes() / TARGET_BLOCK_BYTES))
    if dataset.num_blocks() <= target:
        return dataset
    return dataset.repartition(target).materialize()
