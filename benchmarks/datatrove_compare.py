"""Near-duplicate removal with datatrove's MinHash pipeline and with Refinery, same corpus.

    python -m benchmarks datatrove_compare --docs 20000    # generates the corpus in a temp dir
    python -m benchmarks datatrove_compare --corpus DIR    # existing Parquet shards (id, text)

Run with Refinery's venv; the first run creates benchmarks/.venv-datatrove from
requirements-datatrove.txt. ``--rounds`` rounds each run every side once, in rotating order;
times are medians over rounds, the ratio is the median of each round's ratio, and every round
must remove the same documents. Each side runs in its own process (this module with --side) while
the parent samples that process tree every 0.2 s: peak RSS of the largest process and of the
tree's sum (which counts shared pages, e.g. Ray's object store, once per process).

datatrove: ParquetReader -> MinhashDedupSignature (tasks = shards), MinhashDedupBuckets (14
tasks), MinhashDedupCluster (1), ParquetReader -> MinhashDedupFilter writing the removed
documents with a JsonlWriter (tasks = shards), each a LocalPipelineExecutor with --workers
processes; kept documents are not written (Refinery's dedup phase does not write them either).
14 buckets x 8 hashes, 5-grams, defaults otherwise: xxhash64 of each 5-gram, 64-bit precision,
permutations (a*h + b) mod 2^61-1 (a*h wraps in uint64). Refinery: annotate + dedup phases with
only near dedup; "matched" = 112 permutations, 14 bands x 8 rows, no candidate verification;
"defaults" = 128 permutations, datasketch's optimal banding, candidates checked against the true
shingle-set Jaccard. Its shingle hashes are 32-bit (blake2b per word, combined per 5-gram) with
datasketch's affine32 permutations. Ray start-up is timed apart, not in the total.

Normalization. datatrove 0.10.1 (utils/text.py simplify_text, TextNormConfig defaults), in this
order: str.lower(); every run of decimal digits (\\p{Nd}+, optionally one of . , U+060C U+066B
U+2396-U+2398 and more digits) becomes "0"; each character of its fixed PUNCTUATION string (ASCII
punctuation, common CJK and full-width punctuation, curly double quotes, U+2019, dashes,
guillemets, control characters 0-8, 11-31, 127-159) becomes a space, other symbols (U+2018, §,
bullets, ...) stay; whitespace runs become one space; NFD, then nonspacing marks (Mn) are
dropped (café == cafe); no NFKC, so ligatures, full-width letters, superscripts stay as they
are. Words: spaCy's blank English tokenizer, with its exceptions ("cannot" -> can not, "dont"
-> do nt); a 5-gram is five words joined by a space. Refinery (near_dedup.dedup_units): NFKC,
Unicode lowercase, every run of characters that are not letters (\\p{L}), numbers (\\p{N}),
marks (\\p{M}) or whitespace becomes a space, split on whitespace: digits and diacritics are
kept, all other symbols and punctuation removed.

Also different: a document of under 5 words has no signature in datatrove (never a duplicate),
one shingle of all its words in Refinery. Survivors: datatrove keeps each cluster's union-find
root (union by size, ties to the earlier document in the bucket's sort order), Refinery the
first by (shard, row); identical clusters can remove different members, so the overlap of
removed ids reflects survivor choice as well as different clusters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Only the standard library at import time (Refinery's modules, benchmarks.common and psutil
# inside functions): the datatrove side runs this module in benchmarks/.venv-datatrove.
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".venv-datatrove"
REQUIREMENTS = ROOT / "benchmarks" / "requirements-datatrove.txt"
RESULT = ROOT / "benchmarks" / "results" / "datatrove_compare.json"
DEMO_MODEL = ROOT / "models" / "demo.sp.model"
BUCKETS, ROWS, NGRAM, THRESHOLD = 14, 8, 5, 0.8
SIDES = {"datatrove": "datatrove", "refinery_matched": "Refinery (matched)", "refinery_defaults": "Refinery (defaults)"}


def timed(seconds: dict, name: str, fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    seconds[name] = round(time.perf_counter() - started, 3)
    return value


def datatrove_side(corpus: str, work: Path, workers: int) -> dict:
    from dataclasses import asdict
    from importlib.metadata import version

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BUCKETS, hashes_per_bucket=ROWS)
    shards = len(list(Path(corpus).glob("*.parquet")))

    def reader():
        return ParquetReader(corpus, text_key="text", id_key="id", glob_pattern="*.parquet")

    sigs, buckets, remove, removed = (str(work / d) for d in ("signatures", "buckets", "remove_ids", "removed"))
    excluded = JsonlWriter(removed, compression=None)
    stages = {
        "signatures": ([reader(), MinhashDedupSignature(sigs, config=config)], shards),
        "buckets": ([MinhashDedupBuckets(sigs, buckets, config=config)], BUCKETS),
        "clusters": ([MinhashDedupCluster(buckets, remove, config=config)], 1),
        "filter": ([reader(), MinhashDedupFilter(remove, exclusion_writer=excluded)], shards),
    }
    seconds = {}
    for name, (pipeline, tasks) in stages.items():
        logs = str(work / "logs" / name)
        timed(seconds, name, LocalPipelineExecutor(pipeline, tasks, min(workers, tasks), logging_dir=logs).run)
    ids = [json.loads(line)["id"] for f in sorted(Path(removed).glob("*.jsonl")) for line in f.read_text().splitlines()]
    return {
        "version": version("datatrove"),
        "settings": asdict(config),
        "seconds_total": round(sum(seconds.values()), 3),
        "seconds_by_stage": seconds,
        "removed_ids": ids,
    }


def refinery_side(corpus: str, work: Path, workers: int, variant: str, tokenizer: str) -> dict:
    import pyarrow.dataset as ds
    import ray

    from pipeline.config import load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.phases.annotate.phase import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.runner import ensure_ray

    near = {"enabled": True, "threshold": THRESHOLD, "ngram": NGRAM}
    if variant == "refinery_matched":
        near |= {"num_perm": BUCKETS * ROWS, "bands": BUCKETS, "rows": ROWS, "verify": "none"}
    out = work / "out"
    spec = load_job_spec(
        {
            "name": "cmp",
            "input": {"uri": corpus, "id_column": "id"},
            "output": {"uri": str(out)},
            "ray": {"num_cpus": workers},
            "stages": {
                "language": {"enabled": False},
                "exact_dedup": {"enabled": False},
                "near_dedup": near,
                "tokenize": {"model": tokenizer},
            },
        }
    )
    seconds = {}
    timed(seconds, "ray_start", ensure_ray, spec.ray)
    stats = timed(seconds, "annotate", run_annotate, spec, discover_shards(spec), Progress(quiet=True), workers)
    marker = timed(seconds, "dedup", run_dedup, spec, stats, Progress(quiet=True))
    ray.shutdown()
    # Near-dup removals carry a null id: look each (shard_key, row) up in the annotated shards.
    ids, removed = [], out / "work" / "dedup" / "removed"
    if removed.exists():
        keys = ds.dataset(removed, partitioning="hive").to_table(columns=["shard_key", "row"])
        annotated = ds.dataset(sorted((out / "work" / "annotate").glob("*.parquet")))
        ids = keys.join(annotated.to_table(columns=["shard_key", "row", "id"]), ["shard_key", "row"])["id"].to_pylist()
    assert len(ids) == marker.removed_total, (len(ids), marker.removed_total)
    config = spec.stages.near_dedup
    bands, rows = config.banding()
    settings = {
        "threshold": config.threshold,
        "num_perm": config.num_perm,
        "bands": bands,
        "rows": rows,
        "candidate_probability": config.s_curve(),
    }
    return {
        "settings": {**config.model_dump(mode="json"), **settings},
        "seconds_total": round(seconds["annotate"] + seconds["dedup"], 3),
        "seconds_by_stage": seconds,
        "removed_ids": ids,
    }


def datatrove_python() -> Path:
    """The datatrove venv's interpreter, (re)installed when the requirements file changed."""
    python, stamp = VENV / "bin" / "python", VENV / "installed-requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"installing {REQUIREMENTS.name} into {VENV.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return python


def compare(args: argparse.Namespace, argv: list[str]) -> None:
    from benchmarks import common

    python = datatrove_python()
    with tempfile.TemporaryDirectory(prefix="datatrove-compare-") as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = str(Path(tmp) / "corpus")
            print(f"generating {args.docs} documents in {args.shards} shards ...", flush=True)
            common.sample_corpus(Path(corpus), args.docs, args.shards, 3)
        tokenizer = args.tokenizer or (str(DEMO_MODEL) if DEMO_MODEL.exists() else None)
        if tokenizer is None:  # only validated by these phases: any small model will do
            tokenizer = str(common.train_tokenizer(Path(tmp)))
        stats = common.corpus_stats(corpus, args.corpus or "generated: refinery sample --seed 3")
        pythons = {side: python if side == "datatrove" else Path(sys.executable) for side in SIDES}
        rounds = common.side_by_side_rounds(
            "datatrove_compare", pythons, args.rounds, corpus, Path(tmp), args.workers, ["--tokenizer", tokenizer]
        )
    results, removed = common.merge_rounds(rounds, "removed_ids")
    for side, r in results.items():
        r["removed"] = len(removed[side])
        if side != "datatrove":
            r |= common.ratio_over_rounds(rounds, "datatrove", side)
            r["overlap_with_datatrove"] = common.overlap(removed["datatrove"], removed[side], "datatrove", "refinery")
    fields = {"corpus": stats, "workers": args.workers, "rounds": args.rounds, **results}
    report = common.write_side_by_side("datatrove_compare", argv, fields)
    print_table(report)
    print(f"wrote {RESULT.relative_to(ROOT)}")


def print_table(report: dict) -> None:
    c = report["corpus"]
    print(
        f"\n{c['docs']} docs, {c['text_bytes'] / 1e6:.1f} MB text, {c['shards']} shards; {report['machine']['cores']}"
        f" cores, {report['workers']} workers; datatrove {report['datatrove']['version']}; Refinery's total is"
        f" annotate + dedup (not ray_start); medians of {report['rounds']} rounds, ratios per round"
    )
    print(
        f"{'side':<20} {'total s':>8} {'dt/ref (range)':>18} {'RSS max MB':>11} {'RSS sum MB':>11} {'removed':>8}"
        f" {'both':>6} {'dt only':>8} {'ref only':>8} {'Jaccard':>8}  stages (s)"
    )
    for side, label in SIDES.items():
        r = report[side]
        o = r.get("overlap_with_datatrove", {})
        ratio = ""
        if "ratio_datatrove_over_refinery" in r:
            each = r["ratio_each_round"]
            ratio = f"{r['ratio_datatrove_over_refinery']:.2f} ({min(each):.2f}-{max(each):.2f})"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_by_stage"].items())
        print(
            f"{label:<20} {r['seconds_total']:>8.1f} {ratio:>18} {r['peak_rss_mb']['largest_process']:>11.0f}"
            f" {r['peak_rss_mb']['process_tree_sum']:>11.0f} {r['removed']:>8} {o.get('both', ''):>6}"
            f" {o.get('only_datatrove', ''):>8} {o.get('only_refinery', ''):>8} {o.get('jaccard', ''):>8}  {stages}"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks datatrove_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20000, help="size of the generated corpus")
    parser.add_argument("--shards", type=int, default=8, help="shards of the generated corpus")
    parser.add_argument("--corpus", help="directory of Parquet shards with id and text columns, instead of --docs")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every side once, order rotating")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes on each side")
    parser.add_argument(
        "--tokenizer",
        help="sentencepiece model for the spec (only validated); "
        "default: models/demo.sp.model if present, else one trained on a small sample",
    )
    parser.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.corpus, args.tokenizer = (str(Path(p).resolve()) if p else None for p in (args.corpus, args.tokenizer))
    if args.side is None:
        compare(args, argv)
        return
    if args.side == "datatrove":
        result = datatrove_side(args.corpus, args.work, args.workers)
    else:
        result = refinery_side(args.corpus, args.work, args.workers, args.side, args.tokenizer)
    (args.work / "result.json").write_text(json.dumps(result))
