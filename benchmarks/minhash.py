"""MinHash signatures from text: Refinery's vectorized path (its dedup units, word 5-gram
shingle hashes, 128 permutations as uint32 matrix operations) against what an expert writes
with datasketch: the same units, each document's shingles as bytes, one ``MinHash.bulk``
call (permutations generated once, ``update_batch`` per document, datasketch's SHA-1 hash).
Both start from the same normalized words, and each side is timed in fresh processes,
rotating over ``--rounds``; one core. The MinHashSignatures stage as a job runs it (from
text: normalization, band keys and stored shingle hashes included) is a third side.

    python -m benchmarks minhash --docs 20000 --rounds 6
"""

from __future__ import annotations

from benchmarks import common
from pipeline.core import columns as cols


def sides(docs: int) -> dict:
    """The two sides of the comparison, built in the process that times them."""
    import datasketch

    from pipeline.stages.near_dedup import MinHashSignatures, NearDedupConfig, dedup_units
    from pipeline.stages.near_dedup.minhash import Shingling, shingle_hashes, signatures

    config = NearDedupConfig()
    table = common.docs_table(docs)
    words = dedup_units(table.column(cols.TEXT).combine_chunks(), "word")
    n = config.ngram
    stage = MinHashSignatures(config)

    def refinery():
        hashes, counts = shingle_hashes(words, Shingling(n))
        signatures(hashes, counts, config.num_perm, config.seed)

    def datasketch_bulk():
        lists = words.to_pylist()
        shingles = [[" ".join(w[i : i + n]).encode() for i in range(max(1, len(w) - n + 1))] for w in lists]
        datasketch.MinHash.bulk(shingles, num_perm=config.num_perm, seed=config.seed)

    def refinery_stage():
        for batch in common.batches(table):
            stage.process(batch)

    return {"refinery": refinery, "refinery_stage": refinery_stage, "datasketch_bulk": datasketch_bulk}


def bench_minhash(docs: int, rounds: int) -> dict:
    from pipeline.stages.near_dedup import NearDedupConfig

    table = common.docs_table(docs)
    nbytes = common.text_bytes(table)
    comparison = common.interleaved(
        "benchmarks.minhash:sides",
        {"docs": docs},
        rounds,
        reference="datasketch_bulk",
        candidates=["refinery", "refinery_stage"],
    )
    stage_s = comparison["median_seconds"]["refinery_stage"]
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "num_perm": NearDedupConfig().num_perm,
        "ngram": NearDedupConfig().ngram,
        "vs_datasketch_bulk": comparison,
        "stage_docs_per_s_per_core": table.num_rows / stage_s,
        "stage_mb_per_s_per_core": nbytes / stage_s / 1e6,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("minhash", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    common.write_result("minhash", argv, bench_minhash(args.docs, args.rounds))
