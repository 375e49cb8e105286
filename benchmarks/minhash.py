"""MinHash signatures: the MinHashSignatures stage (NFKC, lowercase, punctuation folding,
word 5-gram shingles and 128 permutations, vectorized) on 1,024-row batches, against a
per-document loop of datasketch.MinHash.update_batch with datasketch's default SHA-1 hash,
given the words already split; one core.

    python -m benchmarks minhash --docs 20000
"""

from __future__ import annotations

from benchmarks import common
from pipeline.core import columns as cols


def bench_minhash(docs: int, repeats: int) -> dict:
    import datasketch

    from pipeline.stages.near_dedup import MinHashSignatures, NearDedupConfig, dedup_units

    table = common.docs_table(docs)
    config = NearDedupConfig()
    stage = MinHashSignatures(config)
    words = dedup_units(table.column(cols.TEXT).combine_chunks(), "word").to_pylist()
    shingled = [[" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))] for w in words]

    def datasketch_loop():
        for shingles in shingled:
            m = datasketch.MinHash(num_perm=config.num_perm, seed=config.seed)
            m.update_batch(shingles)

    ours_s = common.median_seconds(lambda: [stage.process(b) for b in common.batches(table)], repeats)
    baseline_s = common.median_seconds(datasketch_loop, repeats)
    nbytes = common.text_bytes(table)
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "num_perm": config.num_perm,
        "ngram": config.ngram,
        "refinery_s": ours_s,
        "datasketch_update_batch_loop_s": baseline_s,
        "speedup": baseline_s / ours_s,
        "refinery_docs_per_s_per_core": table.num_rows / ours_s,
        "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("minhash", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    common.write_result("minhash", argv, bench_minhash(args.docs, args.repeats))
