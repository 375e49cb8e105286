"""Heuristic quality rules: the QualityRules stage with every family on (Gopher quality,
Gopher repetition, C4, FineWeb) on 1,024-row batches, one core; and each family alone on one
1 MB document of three shapes (web text, one line, one sentence repeated), the case whose
cost could grow faster than linearly. No baseline in the run: RESULTS.md compares its
keep/reject decisions with datatrove's filters.

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
        "one_megabyte_document_s": bench_large_documents(repeats),
    }


def bench_large_documents(repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per family for one 1 MB document of each shape (median of ``repeats``)."""
    import random

    import pyarrow as pa

    from pipeline.stages.quality import QualityRulesConfig, reject_reasons
    from pipeline.tools.sample import random_prose

    families = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
    shapes = {
        "web": random_prose(random.Random(1), 1_000_000),
        "one_line": random_prose(random.Random(1), 1_000_000).replace("\n", " "),
        "repetitive": ("The same few words again and again. " * 30_000)[:1_000_000],
    }
    seconds: dict[str, dict[str, float]] = {}
    for shape, text in shapes.items():
        texts = pa.array([text])
        for family in families:
            config = QualityRulesConfig(**{name: {"enabled": name == family} for name in families})
            reject_reasons(texts, config)  # compiles the regular expressions
            seconds.setdefault(shape, {})[family] = common.median_seconds(
                lambda texts=texts, config=config: reject_reasons(texts, config), repeats
            )
    return seconds


def main(argv: list[str]) -> None:
    parser = common.parser("quality", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    common.write_result("quality", argv, bench_quality(args.docs, args.repeats))
