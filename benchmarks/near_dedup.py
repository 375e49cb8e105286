"""The dedup phase alone (exact + near dedup, default settings) after annotate, on
``refinery sample`` corpora of each size: wall time, peak RSS of any process (sampled every
0.2 s), removals by stage, and growth between sizes. No baseline in the run: datatrove's
MinHash pipeline is compared by ``python -m benchmarks datatrove_compare``.

    python -m benchmarks near_dedup --docs 250000,1000000
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import common


def removed_by_stage(marker) -> dict[str, int]:
    totals: dict[str, int] = {}
    for stages in marker.removed_by_shard.values():
        for stage, reasons in stages.items():
            totals[stage] = totals.get(stage, 0) + sum(reasons.values())
    return totals


def bench_near_dedup(sizes: list[int], tmp: Path, overrides: list[str]) -> dict:
    from pipeline.config import apply_override, load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.phases.annotate.phase import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.runner import PeakMemory, ensure_ray

    model = None
    runs = []
    for n in sizes:
        corpus = common.sample_corpus(tmp / f"corpus_{n}", n, max(8, n // 62500), 3)
        model = model or common.train_tokenizer(tmp, corpus)
        spec = {
            "name": f"near-{n}",
            "input": {"uri": str(corpus), "id_column": "id"},
            "output": {"uri": str(tmp / f"out_{n}")},
            "stages": {"tokenize": {"model": str(model)}},
        }
        for override in overrides:
            apply_override(spec, override)
        spec = load_job_spec(spec)
        ensure_ray(spec.ray)
        started = time.perf_counter()
        stats = run_annotate(spec, discover_shards(spec), Progress(quiet=True), common.cores())
        annotate_s = time.perf_counter() - started
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as memory:
            marker = run_dedup(spec, stats, Progress(quiet=True))
        dedup_s = time.perf_counter() - started
        docs = sum(s.annotated_docs for s in stats)
        runs.append(
            {
                "documents": n,
                "annotated_docs": docs,
                "bytes": sum(s.input_bytes for s in stats),
                "annotate_s": annotate_s,
                "dedup_s": dedup_s,
                "dedup_docs_per_s_per_core": docs / dedup_s / common.cores(),
                "peak_rss_bytes": memory.peak,
                "removed": marker.removed_total,
                "removed_by_stage": removed_by_stage(marker),
            }
        )
    return {"runs": runs, "growth": common.growth(runs, "dedup_s")}


def main(argv: list[str]) -> None:
    parser = common.parser("near_dedup", __doc__)
    common.add_docs(parser, several=True)
    common.add_overrides(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_near_dedup(args.docs, tmp, args.set)
    common.write_result("near_dedup", argv, figures)
