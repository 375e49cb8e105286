"""Tokenize, mix and pack: those three phases (drop dedup removals, tokenize, shuffle, plan
the mixture, pack, write the shards and manifest) at each input size, against raw
``SentencePieceProcessor.encode(texts, num_threads=cores, add_eos=True)`` on the same
documents; peak RSS of those phases as the input grows. Annotate runs first with every
filter off and is not timed. Bigger inputs are the generated corpus hard-linked ``--copies``
times.

    python -m benchmarks pack --docs 1000000 --copies 1,4 --set stages.pack.shard_tokens=40000000
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks import common


def link_copies(corpus: Path, out: Path, copies: int) -> None:
    """``copies`` hard links of every shard of ``corpus``: a bigger input at no disk cost."""
    out.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for shard in sorted(corpus.glob("*.parquet")):
            os.link(shard, out / f"copy{copy}-{shard.name}")


def pack_run(source: Path, out: Path, model: Path, factor: int, overrides: list[str]) -> dict:
    from pipeline.config import apply_override, load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.phases.annotate.phase import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.phases.mix.phase import run_mix
    from pipeline.phases.pack.phase import run_pack
    from pipeline.phases.publish import write_manifest
    from pipeline.phases.tokenize.phase import run_tokenize
    from pipeline.runner import PeakMemory, ensure_ray

    spec = {
        "name": f"pack-x{factor}",
        "input": {"uri": str(source), "id_column": "id"},
        "output": {"uri": str(out), "write_rejects": False},
        "stages": {
            "language": {"enabled": False},
            "exact_dedup": {"enabled": False},
            "near_dedup": {"enabled": False},
            "tokenize": {"model": str(model)},
        },
    }
    for override in overrides:
        apply_override(spec, override)
    spec = load_job_spec(spec)
    ensure_ray(spec.ray)
    quiet = Progress(quiet=True)
    cores = common.cores()
    annotate_stats = run_annotate(spec, discover_shards(spec), quiet, cores)
    marker = run_dedup(spec, annotate_stats, quiet)
    seconds, peaks = {}, {}
    with PeakMemory(interval_s=0.2) as memory:
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            tokenize_stats = run_tokenize(spec, annotate_stats, marker.removals_version, quiet, cores)
        seconds["tokenize"], peaks["tokenize"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            plan, _ = run_mix(spec, tokenize_stats, quiet, cores)
        seconds["mix"], peaks["mix"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            snapshot, pack_stats = run_pack(spec, plan, quiet, cores)
            write_manifest(spec, snapshot, plan, pack_stats, annotate_stats)
        seconds["pack"], peaks["pack"] = time.perf_counter() - started, phase.peak
    total = sum(seconds.values())
    nbytes = sum(s.tokenized_bytes for s in tokenize_stats)
    return {
        "copies_of_corpus": factor,
        "documents": sum(s.tokenized_docs for s in tokenize_stats),
        "input_bytes": sum(s.input_bytes for s in annotate_stats),
        "text_bytes": nbytes,
        "tokens": sum(s.tokens for s in pack_stats),
        "output_shards": len(pack_stats),
        "tokens_per_output_shard": sum(s.tokens for s in pack_stats) / len(pack_stats),
        "seconds": seconds,
        "refinery_s": total,
        "mb_per_s_per_core": nbytes / total / 1e6 / cores,
        "peak_rss_bytes": memory.peak,
        "peak_rss_sum_bytes": memory.peak_total,
        "peak_rss_by_phase": peaks,
    }


def bench_pack(docs: int, copies: list[int], tmp: Path, overrides: list[str]) -> dict:
    import pyarrow.parquet as pq
    import sentencepiece as spm

    corpus = common.sample_corpus(tmp / "corpus", docs, max(8, docs // 62500), 3)
    model = common.train_tokenizer(tmp, corpus)
    runs = []
    for factor in copies:
        source = tmp / f"input_x{factor}"
        link_copies(corpus, source, factor)
        # Each size in a fresh process with its own Ray, so no run inherits another's heap.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(pack_run, source, tmp / f"out_x{factor}", model, factor, overrides).result())
    texts = []
    for shard in sorted(corpus.glob("*.parquet")):
        texts += [t for t in pq.read_table(shard, columns=["text"]).column("text").to_pylist() if t and t.strip()]
    raw = spm.SentencePieceProcessor(model_file=str(model))
    raw_tokens = 0
    started = time.perf_counter()
    for i in range(0, len(texts), 10000):  # batches, or the token lists alone would take ~30 bytes per token
        raw_tokens += sum(map(len, raw.encode(texts[i : i + 10000], num_threads=common.cores(), add_eos=True)))
    raw_s = time.perf_counter() - started
    first = runs[0]
    assert raw_tokens == first["tokens"] and len(texts) == first["documents"]
    last = runs[-1]
    return {
        "runs": runs,
        "raw_sentencepiece_s": raw_s,
        "raw_tokens": raw_tokens,
        "ratio_vs_raw": raw_s / first["refinery_s"],
        "raw_mb_per_s_per_core": first["text_bytes"] / raw_s / 1e6 / common.cores(),
        "rss_growth": {
            "input": last["input_bytes"] / first["input_bytes"],
            "peak_rss": last["peak_rss_bytes"] / first["peak_rss_bytes"],
            "peak_rss_sum": last["peak_rss_sum_bytes"] / first["peak_rss_sum_bytes"],
        },
    }


def main(argv: list[str]) -> None:
    parser = common.parser("pack", __doc__)
    common.add_docs(parser)
    parser.add_argument(
        "--copies", type=common.sizes, default="1,4", help="input sizes as copies of the generated corpus (hard links)"
    )
    common.add_overrides(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_pack(args.docs, args.copies, tmp, args.set)
    common.write_result("pack", argv, figures)
