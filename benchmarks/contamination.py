"""Contamination: the index build for 100,000 eval items as long as GSM8K's (question +
answer, about 120 words; time and peak RSS, in a fresh process), and the scan (the stage's
``matches``: normalize, hash every 13-gram, look it up) against a loop that only normalizes
and hashes (``words`` + ``ngram_hashes``), on web-like documents (benchmarks/web_like.py,
from ../shared/data, required); both in 1,024-row batches on one core, each round in a
fresh process, the order alternating over ``--rounds``.

Two cases. The best case: the 100,000 items are random draws of the documents' own words,
so almost no document n-gram passes the index's bitmap (a clean corpus). The realistic case:
the real GSM8K test set and HumanEval as the eval sets, and ``--planted`` of the documents
(default 1%) carrying one of their items verbatim inside the page; the stage as a job runs
it (``process``, action annotate), with the documents it finds scored against the plants.
Each case also times the stage with every n-gram counting (``min_informative_words: 0``,
``max_items_per_ngram: null``: the rule before informative n-grams).

    python -m benchmarks contamination --docs 20000 --rounds 5
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import random
import time
from pathlib import Path

from benchmarks import common
from pipeline.core import columns as cols

# The rule before informative n-grams: every n-gram of every item counts.
EVERY_NGRAM = {"min_informative_words": 0, "max_items_per_ngram": None}


def build_index_in_child(eval_uri: str, ngram: int) -> dict:
    """Builds a contamination index (meant for a fresh process): seconds and the process's peak RSS."""
    from pipeline.stages.contamination import ContaminationConfig, build_index

    started = time.perf_counter()
    index = build_index(
        ContaminationConfig(
            enabled=True,
            ngram=ngram,
            benchmarks=[{"name": "synthetic", "uri": eval_uri, "fields": ["question", "answer"]}],
        )
    )
    return {"seconds": time.perf_counter() - started, "peak_rss_bytes": common.peak_rss_bytes(), **index.summary()}


def _hash_only(batches) -> None:
    from pipeline.core.ngrams import ngram_hashes, unit_hashes
    from pipeline.stages.contamination import words

    for batch in batches:
        units = words(batch.column(cols.TEXT))
        ngram_hashes(units, 13, unit_hashes(units))


def best_case_sides(docs: int, eval_uri: str) -> dict:
    """The stage's ``matches`` against normalize-and-hash, over a clean corpus."""
    from benchmarks.web_like import web_like_documents
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig

    batches = common.batches(common.text_table(web_like_documents(common.SHARED_DATA, docs, 0.0, seed=3)))
    benchmark = {"name": "synthetic", "uri": eval_uri, "fields": ["question", "answer"]}
    stages = {}
    for side, options in (("scan", {}), ("scan_every_ngram", EVERY_NGRAM)):
        stages[side] = ContaminationCheck(ContaminationConfig(enabled=True, benchmarks=[benchmark], **options))
        stages[side].setup()

    def scan(stage):
        for batch in batches:
            stage.matches(batch.column(cols.TEXT))

    return {
        "normalize_and_hash": lambda: _hash_only(batches),
        "scan": lambda: scan(stages["scan"]),
        "scan_every_ngram": lambda: scan(stages["scan_every_ngram"]),
    }


def real_benchmarks(docs: int, planted: float, options: dict | None = None):
    """Web-like documents, ``planted`` of them given a GSM8K or HumanEval item verbatim
    inside the page (seeded), and the stage over both eval sets; the planted rows."""
    import gzip

    from benchmarks.web_like import web_like_documents
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig

    folder = common.shared_data("benchmarks")
    gsm8k = [json.loads(line) for line in (folder / "gsm8k_test.jsonl").read_text().splitlines() if line.strip()]
    humaneval = [
        json.loads(line) for line in gzip.decompress((folder / "HumanEval.jsonl.gz").read_bytes()).splitlines()
    ]
    items = [f"{r['question']}\n{r['answer']}" for r in gsm8k] + [
        f"{r['prompt']}{r['canonical_solution']}" for r in humaneval
    ]
    rng = random.Random(11)
    texts = web_like_documents(common.SHARED_DATA, docs, 0.0, seed=4)
    plants = set(rng.sample(range(len(texts)), int(len(texts) * planted)))
    for row in sorted(plants):
        paragraphs = texts[row].split("\n")
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), rng.choice(items))
        texts[row] = "\n".join(paragraphs)
    stage = ContaminationCheck(
        ContaminationConfig(
            enabled=True,
            benchmarks=[
                {"name": "gsm8k", "uri": str(folder / "gsm8k_test.jsonl"), "preset": "gsm8k"},
                {"name": "humaneval", "uri": str(folder / "HumanEval.jsonl.gz"), "preset": "humaneval"},
            ],
            **(options or {}),
        )
    )
    stage.setup()
    return common.batches(common.text_table(texts)), stage, plants, len(items)


def real_benchmark_sides(docs: int, planted: float) -> dict:
    """The stage as a job runs it (``process``, action annotate) against normalize-and-hash."""
    batches, stage, _, _ = real_benchmarks(docs, planted)
    every = real_benchmarks(docs, planted, EVERY_NGRAM)[1]
    return {
        "normalize_and_hash": lambda: _hash_only(batches),
        "scan": lambda: [stage.process(b) for b in batches],
        "scan_every_ngram": lambda: [every.process(b) for b in batches],
    }


def _scan_figures(comparison: dict, nbytes: int) -> dict:
    seconds = comparison["median_seconds"]
    return {
        "normalize_and_hash_mb_per_s": nbytes / seconds["normalize_and_hash"] / 1e6,
        "scan_mb_per_s": nbytes / seconds["scan"] / 1e6,
        "scan_vs_normalize_and_hash": comparison["ratio"]["scan"],
        "scan_every_ngram_vs_normalize_and_hash": comparison["ratio"]["scan_every_ngram"],
        "rounds": comparison,
    }


def bench_contamination(docs: int, rounds: int, tmp: Path, items: int = 100_000) -> dict:
    from benchmarks.web_like import web_like_documents

    common.shared_data("nltk")
    texts = web_like_documents(common.SHARED_DATA, docs, 0.0, seed=3)
    # Items are word sequences drawn from the documents' own word stream: real word
    # frequencies, items as long as GSM8K's, and (as in a clean corpus) no item text in the
    # documents.
    rng = random.Random(0)
    stream = [w for t in texts[:2000] for w in t.split()]
    eval_path = tmp / "eval.jsonl"
    with eval_path.open("w") as handle:
        for i in range(items):
            question = f"item {i}: " + " ".join(rng.choices(stream, k=80))
            handle.write(json.dumps({"question": question, "answer": " ".join(rng.choices(stream, k=40))}) + "\n")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        built = pool.submit(build_index_in_child, str(eval_path), 13).result()
    print(
        f"index of {items:,} items: {built['seconds']:.1f} s, peak RSS {built['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"{built['ngrams']:,} n-grams",
        flush=True,
    )
    comparison = common.interleaved(
        "benchmarks.contamination:best_case_sides",
        {"docs": docs, "eval_uri": str(eval_path)},
        rounds,
        reference="normalize_and_hash",
        candidates=["scan", "scan_every_ngram"],
    )
    return {
        "items": items,
        "index_build_s": built["seconds"],
        "index_peak_rss_bytes": built["peak_rss_bytes"],
        "index_ngrams": built["ngrams"],
        "index_bytes": built["bytes"],
        "documents": len(texts),
        "bytes": common.text_bytes(common.text_table(texts)),
        **_scan_figures(comparison, common.text_bytes(common.text_table(texts))),
    }


def bench_real_benchmarks(docs: int, rounds: int, planted: float) -> dict:
    """GSM8K and HumanEval items planted verbatim in ``planted`` of web-like documents."""
    from pipeline.stages.contamination import CONTAMINATION

    batches, stage, plants, items = real_benchmarks(docs, planted)
    overlaps = [c for batch in batches for c in stage.process(batch).table.column(CONTAMINATION).to_pylist()]
    found = {row for row, overlap in enumerate(overlaps) if overlap}
    comparison = common.interleaved(
        "benchmarks.contamination:real_benchmark_sides",
        {"docs": docs, "planted": planted},
        rounds,
        reference="normalize_and_hash",
        candidates=["scan", "scan_every_ngram"],
    )
    return {
        "items": items,
        "documents": len(overlaps),
        "planted_documents": len(plants),
        "found_documents": len(found),
        "recall": len(found & plants) / len(plants) if plants else None,
        "found_without_a_plant": len(found - plants),
        **_scan_figures(comparison, sum(common.text_bytes(b) for b in batches)),
    }


def main(argv: list[str]) -> None:
    parser = common.parser("contamination", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    parser.add_argument("--planted", type=float, default=0.01, help="share of documents given an eval item")
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_contamination(args.docs, args.rounds, tmp)
    figures["real_benchmarks"] = bench_real_benchmarks(args.docs, args.rounds, args.planted)
    for case, numbers in (("best case", figures), ("real benchmarks", figures["real_benchmarks"])):
        ratio, every = numbers["scan_vs_normalize_and_hash"], numbers["scan_every_ngram_vs_normalize_and_hash"]
        print(
            f"{case}: scan {numbers['scan_mb_per_s']:.2f} MB/s/core, ratio {ratio['median']:.2f} "
            f"({ratio['range'][0]:.2f}-{ratio['range'][1]:.2f}); every n-gram counting "
            f"{every['median']:.2f} ({every['range'][0]:.2f}-{every['range'][1]:.2f})",
            flush=True,
        )
    common.write_result("contamination", argv, figures)
