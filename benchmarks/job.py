"""The whole job: a quickstart-shaped spec (default stages, pack with seq_len 2,048) run by
``run_job`` on ``refinery sample`` corpora of each size; wall time, throughput per core, peak
RSS of any process and time per phase, and how they grow between sizes. No baseline: the
figure of merit is cost growth. Ray starts before the first timed run.

    python -m benchmarks job --docs 5000,20000
    python -m benchmarks job --docs 20000,100000,200000 --set stages.near_dedup.enabled=false
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import common


def bench_job(sizes: list[int], tmp: Path, overrides: list[str]) -> dict:
    from pipeline.config import apply_override
    from pipeline.core.progress import Progress
    from pipeline.runner import run_job

    model = None
    runs = []
    common.start_ray()  # so that no run's wall time includes starting Ray
    for n in sizes:
        corpus = common.sample_corpus(tmp / f"corpus_{n}", n, 8, 3)
        model = model or common.train_tokenizer(tmp, corpus)
        spec = {
            "name": f"bench-{n}",
            "input": {"uri": str(corpus), "id_column": "id"},
            "output": {"uri": str(tmp / f"out_{n}")},
            "stages": {"tokenize": {"model": str(model)}, "pack": {"seq_len": 2048}},
        }
        for override in overrides:
            apply_override(spec, override)
        started = time.perf_counter()
        result = run_job(spec, progress=Progress(quiet=True))
        wall = time.perf_counter() - started
        totals = result.report["totals"]
        runs.append(
            {
                "documents": n,
                "bytes": totals["input_bytes"],
                "wall_s": wall,
                "docs_per_s_per_core": n / wall / common.cores(),
                "mb_per_s_per_core": totals["input_bytes"] / wall / 1e6 / common.cores(),
                "peak_rss_bytes": result.report["peak_rss_bytes"],
                "phases": {p["name"]: p["seconds"] for p in result.report["phases"]},
            }
        )
    return {"runs": runs, "growth": common.growth(runs, "wall_s")}


def main(argv: list[str]) -> None:
    parser = common.parser("job", __doc__)
    common.add_docs(parser, several=True)
    common.add_overrides(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_job(args.docs, tmp, args.set)
    common.write_result("job", argv, figures)
