"""Tokenize, mix and pack: those three phases (drop dedup removals, tokenize, shuffle, plan
the mixture, pack, write the shards and manifest) against raw
``SentencePieceProcessor.encode(texts, num_threads=cores, add_eos=True)`` on the same
documents, interleaved over ``--rounds`` fresh processes; then peak RSS of those phases as
the input grows, one fresh process per size. Annotate runs first with every filter off and
is not timed. Bigger inputs are the generated corpus hard-linked ``--copies`` times.

    python -m benchmarks pack --docs 200000 --rounds 5 --copies 0          # the ratio
    python -m benchmarks pack --docs 1000000 --rounds 0 --copies 1,4 --set stages.pack.shard_tokens=40000000
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


def prepared(source: Path, out: Path, model: Path, overrides: list[str]):
    """The job spec, annotated (every filter off) and deduplicated in ``out``; committed
    work is reused, so a later call on the same ``out`` only reads markers."""
    from pipeline.config import apply_override, load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.phases.annotate.phase import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.runner import ensure_ray

    spec = {
        "name": "pack-benchmark",
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
    annotate_stats = run_annotate(spec, discover_shards(spec), quiet, common.cores())
    return spec, annotate_stats, run_dedup(spec, annotate_stats, quiet)


def packing_phases(spec, annotate_stats, marker) -> dict:
    """The timed phases, tokenize, mix and pack (with the manifest), from a clean slate."""
    from pipeline.core import storage
    from pipeline.core.layout import OutputLayout
    from pipeline.core.progress import Progress
    from pipeline.phases.mix.phase import run_mix
    from pipeline.phases.pack.phase import run_pack
    from pipeline.phases.publish import move_into_snapshot, write_manifest
    from pipeline.phases.tokenize.phase import run_tokenize
    from pipeline.runner import PeakMemory

    layout = OutputLayout(spec.output.uri)
    work = storage.join(spec.output.uri, "work")
    for path in [
        *(storage.join(work, p) for p in ("tokenize", "mix", "pack")),
        layout.snapshots_dir,
        layout.manifest,
        layout.latest,
    ]:
        storage.remove_tree(path, spec.output.storage_options)
    quiet, cores = Progress(quiet=True), common.cores()
    seconds, peaks = {}, {}
    with PeakMemory(interval_s=0.2) as memory:
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            tokenize_stats = run_tokenize(spec, annotate_stats, marker, quiet, cores)
        seconds["tokenize"], peaks["tokenize"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            plan, _ = run_mix(spec, tokenize_stats, quiet, cores)
        seconds["mix"], peaks["mix"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            snapshot, pack_stats = run_pack(spec, plan, annotate_stats, quiet, cores)
            move_into_snapshot(spec, snapshot, pack_stats, quiet)
            write_manifest(spec, snapshot, plan, pack_stats, annotate_stats)
        seconds["pack"], peaks["pack"] = time.perf_counter() - started, phase.peak
    total = sum(seconds.values())
    nbytes = sum(s.tokenized_bytes for s in tokenize_stats)
    return {
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


def pack_run(source: Path, out: Path, model: Path, factor: int, overrides: list[str]) -> dict:
    return {"copies_of_corpus": factor, **packing_phases(*prepared(source, out, model, overrides))}


def corpus_texts(corpus: Path) -> list[str]:
    """The documents the pipeline tokenizes: every non-empty text (filters are off)."""
    import pyarrow.parquet as pq

    texts = []
    for shard in sorted(corpus.glob("*.parquet")):
        texts += [t for t in pq.read_table(shard, columns=["text"]).column("text").to_pylist() if t and t.strip()]
    return texts


def raw_encode(processor, texts: list[str]) -> int:
    """Tokens of ``texts`` with EOS, in 10,000-document calls on every core's thread (one
    call for all would hold ~30 bytes per token in Python lists)."""
    tokens = 0
    for i in range(0, len(texts), 10000):
        tokens += sum(map(len, processor.encode(texts[i : i + 10000], num_threads=common.cores(), add_eos=True)))
    return tokens


def pack_sides(corpus: str, out: str, model: str, overrides: list[str]) -> dict:
    """One round's sides, built in a fresh process: raw sentencepiece on the texts in memory,
    and Refinery's three phases on the annotated corpus (Ray started, not timed). Both count
    the same tokens, checked once both have run."""
    import sentencepiece as spm

    texts = corpus_texts(Path(corpus))
    processor = spm.SentencePieceProcessor(model_file=model)
    job = prepared(Path(corpus), Path(out), Path(model), overrides)
    counted: dict[str, int] = {}

    def agree(side: str, tokens: int) -> None:
        counted[side] = tokens
        assert len(set(counted.values())) == 1, f"token counts differ: {counted}"

    def raw() -> None:
        agree("raw", raw_encode(processor, texts))

    def refinery() -> float:
        run = packing_phases(*job)
        agree("refinery", run["tokens"])
        return run["refinery_s"]

    return {"raw_sentencepiece": raw, "refinery": refinery}


def bench_pack(docs: int, copies: list[int], rounds: int, tmp: Path, overrides: list[str]) -> dict:
    import sentencepiece as spm

    corpus = common.sample_corpus(tmp / "corpus", docs, max(8, docs // 62500), 3)
    model = common.train_tokenizer(tmp, corpus)
    figures: dict = {}
    if rounds:
        figures["ratio_rounds"] = common.interleaved(
            "benchmarks.pack:pack_sides",
            {"corpus": str(corpus), "out": str(tmp / "out_rounds"), "model": str(model), "overrides": overrides},
            rounds,
            "raw_sentencepiece",
            ["refinery"],
            warmup=False,
        )
        ratio = figures["ratio_rounds"]["ratio"]["refinery"]
        print(
            f"Refinery / raw sentencepiece: {ratio['median']:.2f}x (range {ratio['range'][0]:.2f}-{ratio['range'][1]:.2f})"
        )
    runs = []
    for factor in copies:
        source = tmp / f"input_x{factor}"
        link_copies(corpus, source, factor)
        # Each size in a fresh process with its own Ray, so no run inherits another's heap.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(pack_run, source, tmp / f"out_x{factor}", model, factor, overrides).result())
    if runs:
        texts = corpus_texts(corpus)
        raw_tokens = raw_encode(spm.SentencePieceProcessor(model_file=str(model)), texts)
        first, last = runs[0], runs[-1]
        assert raw_tokens == first["tokens"] and len(texts) == first["documents"]
        figures |= {
            "runs": runs,
            "raw_tokens": raw_tokens,
            "rss_growth": {
                "input": last["input_bytes"] / first["input_bytes"],
                "wall": last["refinery_s"] / first["refinery_s"],
                "peak_rss": last["peak_rss_bytes"] / first["peak_rss_bytes"],
                "peak_rss_sum": last["peak_rss_sum_bytes"] / first["peak_rss_sum_bytes"],
            },
        }
    return figures


def main(argv: list[str]) -> None:
    parser = common.parser("pack", __doc__)
    common.add_docs(parser)
    parser.add_argument(
        "--copies", type=common.sizes, default="1,4", help="input sizes as copies of the generated corpus (hard links)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds against raw sentencepiece (0: none), at 1x"
    )
    common.add_overrides(parser)
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_pack(args.docs, [c for c in args.copies if c], args.rounds, tmp, args.set)
    common.write_result("pack", argv, figures)
