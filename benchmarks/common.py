"""What the benchmarks share: paths, command-line options, timing, generated corpora, and
the JSON each one writes to benchmarks/results/<name>.json."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.tools.sample import build_sample_documents

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("REFINERY_SHARED_DATA") or ROOT.parent / "shared" / "data")


class MissingSharedData(SystemExit):
    """A benchmark's real data is absent: it stops rather than measure something else."""


def run_side(module: str, side: str, python: Path, corpus: str, work: Path, workers: int, extra: list[str]) -> dict:
    """One side of a side-by-side benchmark (``python -m benchmarks <module> --side <side>``,
    which writes ``<work>/result.json``) in its own process, under ``python`` (another venv's
    for another tool); its result plus the peak RSS of its process tree, sampled every 0.2 s:
    of the largest process and of the tree's sum (which counts shared pages, e.g. Ray's object
    store, once per process)."""
    work.mkdir(parents=True)
    command = [str(python), "-m", "benchmarks", module, "--side", side, "--corpus", corpus, "--work", str(work)]
    command += ["--workers", str(workers), *extra]
    largest = tree = processes = 0
    started = time.perf_counter()
    with open(work / "side.log", "w") as log:
        proc = psutil.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            rss = []
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            largest, tree = max(largest, max(rss, default=0)), max(tree, sum(rss))
            processes = max(processes, len(rss))
            time.sleep(0.2)
    if proc.returncode:
        log_tail = (work / "side.log").read_text().splitlines()[-30:]
        sys.exit(f"{side} failed with exit code {proc.returncode}; its log ends:\n" + "\n".join(log_tail))
    mb = {"largest_process": round(largest / 2**20, 1), "process_tree_sum": round(tree / 2**20, 1)}
    return {
        **json.loads((work / "result.json").read_text()),
        "peak_rss_mb": mb,
        "max_processes": processes,
        "process_wall_s": round(time.perf_counter() - started, 3),
    }


def corpus_stats(corpus: str, label: str) -> dict:
    """Shards, documents and bytes of a directory of Parquet shards with a text column."""
    import pyarrow.parquet as pq

    files = sorted(Path(corpus).glob("*.parquet"))
    return {
        "path": label,
        "shards": len(files),
        "docs": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
        "parquet_bytes": sum(f.stat().st_size for f in files),
        "text_bytes": sum(
            pc.sum(pc.binary_length(pq.read_table(f, columns=["text"])["text"])).as_py() or 0 for f in files
        ),
    }


def side_by_side_rounds(
    module: str, pythons: dict[str, Path], rounds: int, corpus: str, tmp: Path, workers: int, extra: list[str]
) -> list[dict]:
    """Every side once per round, each in a fresh process (``run_side``); the order rotates
    from round to round, so drift falls on every side."""
    sides = list(pythons)
    results: list[dict] = []
    for number in range(rounds):
        order = sides[number % len(sides) :] + sides[: number % len(sides)]
        results.append({})
        for side in order:
            print(f"round {number + 1}/{rounds}: running {side} ...", flush=True)
            work = tmp / f"{side}-{number}"
            results[-1][side] = run_side(module, side, pythons[side], corpus, work, workers, extra)
    return results


def merge_rounds(rounds: list[dict], ids_key: str) -> tuple[dict, dict[str, set]]:
    """Per side: medians over rounds of its total and per-stage seconds, the largest peak
    RSS, and the document ids it reported (``ids_key``), which must be the same every round."""
    results = rounds[0]
    ids = {side: set(r.pop(ids_key)) for side, r in results.items()}
    for later in rounds[1:]:
        for side, r in later.items():
            assert set(r.pop(ids_key)) == ids[side], f"{side} reported other documents in another round"
    for side, r in results.items():
        totals = [one[side]["seconds_total"] for one in rounds]
        r["seconds_total_each_round"] = totals
        r["seconds_total"] = statistics.median(totals)
        r["seconds_by_stage"] = {
            stage: round(statistics.median(one[side]["seconds_by_stage"][stage] for one in rounds), 3)
            for stage in r["seconds_by_stage"]
        }
        r["peak_rss_mb"] = {kind: max(one[side]["peak_rss_mb"][kind] for one in rounds) for kind in r["peak_rss_mb"]}
    return results, ids


def ratio_over_rounds(rounds: list[dict], baseline: str, side: str) -> dict:
    """The baseline's seconds over the side's, per round, and their median."""
    ratios = [one[baseline]["seconds_total"] / one[side]["seconds_total"] for one in rounds]
    return {
        f"ratio_{baseline}_over_refinery": round(statistics.median(ratios), 3),
        "ratio_each_round": [round(x, 3) for x in ratios],
    }


def overlap(a: set, b: set, name_a: str, name_b: str) -> dict:
    """How two sets of document ids agree."""
    return {
        "both": len(a & b),
        f"only_{name_a}": len(a - b),
        f"only_{name_b}": len(b - a),
        "jaccard": round(len(a & b) / len(a | b), 4) if a | b else 1.0,
    }


def write_side_by_side(name: str, argv: list[str], fields: dict) -> dict:
    """The report of a side-by-side benchmark (command, machine, then ``fields``), written to
    ``benchmarks/results/<name>.json``."""
    report = {
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", name, *argv]),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        **fields,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def shared_data(name: str) -> Path:
    """A folder or file of ../shared/data; its absence is an error naming the override."""
    path = SHARED_DATA / name
    if not path.exists():
        raise MissingSharedData(
            f"error: {path} is absent; this benchmark reads real data from ../shared/data. "
            "Set REFINERY_SHARED_DATA to the folder that holds it."
        )
    return path


# --- command line -------------------------------------------------------------------------------


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def add_docs(parser: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        parser.add_argument("--docs", type=sizes, default="20000", help="documents: a comma-separated list of sizes")
    else:
        parser.add_argument("--docs", type=int, default=20000, help="documents")


def add_repeats(parser: argparse.ArgumentParser, help: str = "timings per side; the median is reported") -> None:
    parser.add_argument("--repeats", type=int, default=3, help=help)


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="job spec override, e.g. --set stages.near_dedup.verify=none",
    )


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def write_result(name: str, argv: list[str], figures: dict) -> None:
    """benchmarks/results/<name>.json: the figures, the command that reproduces them and the machine."""
    result = {
        "benchmark": name,
        "command": " ".join(["python", "-m", "benchmarks", name, *argv]),
        "machine": {
            "cores": cores(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
        "peak_rss_driver_bytes": peak_rss_bytes(),
        "figures": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


# --- measuring ----------------------------------------------------------------------------------


def cores() -> int:
    return os.cpu_count() or 1


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _time_round(factory: str, kwargs: dict, order: list[str], warmup: bool) -> dict[str, float]:
    module, name = factory.split(":")
    sides = getattr(importlib.import_module(module), name)(**kwargs)
    if warmup:  # lazy imports, compiled patterns, allocator pools
        for side in order:
            sides[side]()
    seconds = {}
    for side in order:
        started = time.perf_counter()
        measured = sides[side]()
        seconds[side] = measured if isinstance(measured, float) else time.perf_counter() - started
    return seconds


def interleaved(
    factory: str, kwargs: dict, rounds: int, reference: str, candidates: list[str], warmup: bool = True
) -> dict:
    """Times the sides of one comparison round by round, each round in a fresh process
    (``factory``, ``module:function``, builds ``{side: callable}`` there from ``kwargs``),
    the order of the sides rotating, so that machine drift and the cost of running later in
    a process fall on every side. Each side runs once untimed first unless ``warmup`` is
    off (for sides of many seconds). A side that must set up before its timed part returns
    the seconds it measured itself, a float. A ratio is reference seconds / candidate
    seconds: above 1 the candidate is faster."""
    context = multiprocessing.get_context("spawn")
    sides = [reference, *candidates]
    timings = []
    for number in range(rounds):
        order = sides[number % len(sides) :] + sides[: number % len(sides)]
        # an executor's worker exits normally when it shuts down, so a Ray it started stops too
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            timings.append(pool.submit(_time_round, factory, kwargs, order, warmup).result())
        print(f"round {number + 1}/{rounds}: " + ", ".join(f"{s} {timings[-1][s]:.2f} s" for s in order), flush=True)
    ratios = {side: [t[reference] / t[side] for t in timings] for side in candidates}
    return {
        "rounds": rounds,
        "seconds": {side: [t[side] for t in timings] for side in sides},
        "median_seconds": {side: statistics.median(t[side] for t in timings) for side in sides},
        "ratio": {
            side: {"median": statistics.median(r), "range": [min(r), max(r)], "per_round": r}
            for side, r in ratios.items()
        },
    }


def add_rounds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds, each in a fresh process")


def peak_rss_bytes() -> int:
    """This process's peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def growth(runs: list[dict], seconds_key: str) -> dict | None:
    """How documents, wall time and peak RSS grow from the smallest run to the largest."""
    if len(runs) < 2:
        return None
    first, last = runs[0], runs[-1]
    return {
        "documents": last["documents"] / first["documents"],
        "wall": last[seconds_key] / first[seconds_key],
        "peak_rss": last["peak_rss_bytes"] / first["peak_rss_bytes"],
    }


def start_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=cores(), include_dashboard=False, logging_level=logging.WARNING)
        import ray.data
        from ray.data.context import ShuffleStrategy

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


# --- corpora ------------------------------------------------------------------------------------


def docs_table(n: int) -> pa.Table:
    """The sample corpus (``refinery sample``, seed 1) in memory, empty documents left out."""
    rows, _ = build_sample_documents(n, seed=1)
    return text_table([r["text"] for r in rows if r["text"].strip()])


def text_table(texts: list[str]) -> pa.Table:
    return pa.table(
        {
            cols.ID: [str(i) for i in range(len(texts))],
            cols.TEXT: texts,
            cols.DOMAIN: pa.nulls(len(texts), pa.string()),
            cols.URL: pa.nulls(len(texts), pa.string()),
            cols.SHARD: ["bench"] * len(texts),
            cols.ROW: list(range(len(texts))),
            cols.TEXT_BYTES: [len(t.encode()) for t in texts],
        },
        schema=cols.BASE_SCHEMA,
    )


def text_bytes(table: pa.Table) -> int:
    return int(pc.sum(table.column(cols.TEXT_BYTES)).as_py())


def batches(table: pa.Table, size: int = 1024) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def refinery(*args: str) -> None:
    """The CLI in a subprocess, so corpus generation does not count in this process's memory."""
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def sample_corpus(out: Path, docs: int, shards: int, seed: int) -> Path:
    refinery("sample", str(out), "--docs", str(docs), "--shards", str(shards), "--seed", str(seed))
    return out


def train_tokenizer(tmp: Path, corpus: Path | None = None) -> Path:
    """A sentencepiece model of 8,000 pieces trained on ``corpus`` (default: a 3,000-document sample)."""
    if corpus is None:
        corpus = sample_corpus(tmp / "tok_corpus", 3000, 2, 5)
    model = tmp / "bench.sp.model"
    refinery("train-tokenizer", str(corpus), str(model), "--vocab-size", "8000")
    return model
