"""Exact dedup: key hashing throughput of the ExactDedupKeys stage (NFKC, lowercase,
whitespace folding, blake2b-64) on one core, and the global Ray Data dedup
(ExactDuplicates: sort shuffle + vectorized per-block survivor) against a single-process
Python dict over the same keys.

    python -m benchmarks exact_dedup --docs 50000
"""

from __future__ import annotations

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols
from pipeline.core.annotated import NODE, node_ids, shard_ordinals


class KeysInMemory:
    """The ``read`` of AnnotatedShards over keys already in memory, so that the global step is
    timed without reading annotated Parquet shards."""

    def __init__(self, keys: pa.Table, block_rows: int) -> None:
        nodes = node_ids(shard_ordinals(keys.column(cols.SHARD), ["bench"]), keys.column(cols.ROW).to_numpy())
        self.blocks = common.batches(keys.append_column(NODE, pa.array(nodes)), block_rows)

    def read(self, columns: list[str]):
        import ray.data

        return ray.data.from_arrow([b.select([NODE, *columns]) for b in self.blocks])


def bench_exact_dedup(docs: int, repeats: int) -> dict:
    from pipeline.stages.exact_dedup import EXACT_HASH, ExactDedupConfig, ExactDedupKeys, ExactDuplicates

    table = common.docs_table(docs)
    stage = ExactDedupKeys(ExactDedupConfig())
    keyed = pa.concat_tables([stage.process(b).table for b in common.batches(table)])
    hash_s = common.median_seconds(lambda: [stage.process(b) for b in common.batches(table)], repeats)
    keys = keyed.select([cols.SHARD, cols.ROW, cols.ID, EXACT_HASH])

    def single_process():
        first: dict[int, str] = {}
        removed = 0
        for h in keys.column(EXACT_HASH).to_pylist():
            if h in first:
                removed += 1
            else:
                first[h] = "x"
        return removed

    common.start_ray()
    shards = KeysInMemory(keys, 8192)
    global_stage = ExactDuplicates(ExactDedupConfig())
    ray_s = common.median_seconds(lambda: global_stage.find_removals(shards).materialize().count(), repeats)
    dict_s = common.median_seconds(single_process, repeats)
    nbytes = common.text_bytes(table)
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "hash_keys_s": hash_s,
        "hash_mb_per_s_per_core": nbytes / hash_s / 1e6,
        "global_ray_s": ray_s,
        "single_process_dict_s": dict_s,
        "removed": single_process(),
    }


def main(argv: list[str]) -> None:
    parser = common.parser("exact_dedup", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    common.write_result("exact_dedup", argv, bench_exact_dedup(args.docs, args.repeats))
