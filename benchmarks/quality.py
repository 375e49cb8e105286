"""Heuristic quality rules: the QualityRules stage with every family on (Gopher quality,
Gopher repetition, C4, FineWeb) on 1,024-row batches, one core. No baseline in the run:
RESULTS.md compares its keep/reject decisions with datatrove's filters.

    python -m benchmarks quality --docs 20000
"""

from __future__ import annotations

from benchmarks import common


def bench_quality(docs: int, repeats: int) -> dict:
    from pipeline.stages.quality import QualityRules, QualityRulesConfig

    table = common.docs_table(docs)
    stage = QualityRules(QualityRulesConfig(enabled=True))
    stage.setup()
    seconds = common.median_seconds(lambda: [stage.process(b) for b in common.batches(table)], repeats)
    nbytes = common.text_bytes(table)
    return {
        "documents": table.num_rows,
        "bytes": nbytes,
        "refinery_s": seconds,
        "mb_per_s_per_core": nbytes / seconds / 1e6,
        "docs_per_s_per_core": table.num_rows / seconds,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("quality", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    common.write_result("quality", argv, bench_quality(args.docs, args.repeats))
