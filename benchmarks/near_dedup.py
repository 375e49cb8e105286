"""The dedup phase alone (exact + near dedup, default settings) after annotate, on
``refinery sample`` corpora of each size: wall time, peak RSS of any process (sampled every
0.2 s), removals by stage, and growth between sizes. No baseline in the run: datatrove's
MinHash pipeline is compared by ``python -m benchmarks datatrove_compare``.

    python -m benchmarks near_dedup --docs 250000,1000000

``--variant KEY.PATH=VALUE`` (repeatable; all apply to one variant) also runs the dedup
phase with those settings on the same annotated shards, default and variant alternating for
``--rounds`` rounds, and reports each side's median wall time and largest peak RSS and the
variant's ratios to the default:

    python -m benchmarks near_dedup --docs 100000 --variant stages.near_dedup.transitive=false
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


def bench_near_dedup(
    sizes: list[int], tmp: Path, overrides: list[str], variant: list[str] | None = None, rounds: int = 2
) -> dict:
    from pipeline.config import apply_override, load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.phases.annotate.phase import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.runner import PeakMemory, ensure_ray

    def timed_dedup(spec, stats) -> tuple[float, int, object]:
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as memory:
            marker = run_dedup(spec, stats, Progress(quiet=True))
        return time.perf_counter() - started, memory.peak, marker

    model = None
    runs = []
    for n in sizes:
        corpus = common.sample_corpus(tmp / f"corpus_{n}", n, max(8, n // 62500), 3)
        model = model or common.train_tokenizer(tmp, corpus)
        raw = {
            "name": f"near-{n}",
            "input": {"uri": str(corpus), "id_column": "id"},
            "output": {"uri": str(tmp / f"out_{n}")},
            "stages": {"tokenize": {"model": str(model)}},
        }
        for override in overrides:
            apply_override(raw, override)
        spec = load_job_spec(raw)
        ensure_ray(spec.ray)
        started = time.perf_counter()
        stats = run_annotate(spec, discover_shards(spec), Progress(quiet=True), common.cores())
        annotate_s = time.perf_counter() - started
        dedup_s, peak, marker = timed_dedup(spec, stats)
        docs = sum(s.annotated_docs for s in stats)
        run = {
            "documents": n,
            "annotated_docs": docs,
            "bytes": sum(s.input_bytes for s in stats),
            "annotate_s": annotate_s,
            "dedup_s": dedup_s,
            "dedup_docs_per_s_per_core": docs / dedup_s / common.cores(),
            "peak_rss_bytes": peak,
            "removed": marker.removed_total,
            "removed_by_stage": removed_by_stage(marker),
        }
        if variant:
            run["variant"] = compare_variant(raw, variant, stats, rounds, timed_dedup)
        runs.append(run)
    return {"runs": runs, "growth": common.growth(runs, "dedup_s")}


def compare_variant(raw: dict, variant: list[str], stats, rounds: int, timed_dedup) -> dict:
    """The dedup phase with and without ``variant`` on the same annotated shards, alternating;
    each run starts without a dedup marker or index, so it recomputes everything."""
    import copy
    import statistics

    from pipeline.config import apply_override, load_job_spec
    from pipeline.core import storage
    from pipeline.core.layout import OutputLayout

    changed = copy.deepcopy(raw)
    for override in variant:
        apply_override(changed, override)
    specs = {"default": load_job_spec(raw), "variant": load_job_spec(changed)}
    seconds: dict[str, list[float]] = {"default": [], "variant": []}
    peaks: dict[str, list[int]] = {"default": [], "variant": []}
    removed: dict[str, dict[str, int]] = {}
    for _ in range(rounds):
        for side, spec in specs.items():
            layout = OutputLayout(spec.output.uri)
            for committed in (layout.dedup_marker, layout.dedup_dir, layout.index_dir):
                storage.remove_tree(committed, spec.output.storage_options)
            wall, peak, marker = timed_dedup(spec, stats)
            seconds[side].append(wall)
            peaks[side].append(peak)
            removed[side] = removed_by_stage(marker)
    median = {side: statistics.median(values) for side, values in seconds.items()}
    peak = {side: max(values) for side, values in peaks.items()}
    return {
        "settings": variant,
        "rounds": rounds,
        "dedup_s": seconds,
        "peak_rss_bytes": peaks,
        "removed_by_stage": removed,
        "median_dedup_s": median,
        "max_peak_rss_bytes": peak,
        "time_ratio": median["variant"] / median["default"],
        "peak_rss_ratio": peak["variant"] / peak["default"],
    }


def main(argv: list[str]) -> None:
    parser = common.parser("near_dedup", __doc__)
    common.add_docs(parser, several=True)
    common.add_overrides(parser)
    parser.add_argument(
        "--variant", action="append", default=[], metavar="KEY.PATH=VALUE", help="settings compared with the default"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --variant: dedup runs per side, alternating")
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_near_dedup(args.docs, tmp, args.set, args.variant, args.rounds)
    common.write_result("near_dedup", argv, figures)
