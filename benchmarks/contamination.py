"""Contamination: the index build for 100,000 eval items as long as GSM8K's (question +
answer, about 120 words; time and peak RSS, in a fresh process), and the scan (the stage's
``matches``: normalize, hash every 13-gram, look it up) against a loop that only normalizes
and hashes (``words`` + ``ngram_hashes``), on web-like documents (benchmarks/web_like.py,
from ../shared/data, required); both in 1,024-row batches on one core, interleaved.

Two cases. The best case: the 100,000 items are random draws of the documents' own words,
so almost no document n-gram passes the index's bitmap (a clean corpus). The realistic case:
the real GSM8K test set and HumanEval as the eval sets, and ``--planted`` of the documents
(default 1%) carrying one of their items verbatim inside the page; the stage as a job runs
it (``process``, action annotate), with the documents it finds scored against the plants.

    python -m benchmarks contamination --docs 20000 --repeats 5
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import random
import statistics
import time
from pathlib import Path

from benchmarks import common
from pipeline.core import columns as cols


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


def bench_contamination(docs: int, repeats: int, tmp: Path, items: int = 100_000) -> dict:
    from benchmarks.web_like import web_like_documents
    from pipeline.core.ngrams import ngram_hashes, unit_hashes
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig, words

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
            handle.write(
                json.dumps(
                    {
                        "question": f"item {i}: " + " ".join(rng.choices(stream, k=80)),
                        "answer": " ".join(rng.choices(stream, k=40)),
                    }
                )
                + "\n"
            )
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        built = pool.submit(build_index_in_child, str(eval_path), 13).result()
    print(
        f"index of {items:,} items: {built['seconds']:.1f} s, peak RSS {built['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"{built['ngrams']:,} n-grams",
        flush=True,
    )

    stage = ContaminationCheck(
        ContaminationConfig(
            enabled=True, benchmarks=[{"name": "synthetic", "uri": str(eval_path), "fields": ["question", "answer"]}]
        )
    )
    stage.setup()
    table = common.text_table(texts)
    batches = [b.column(cols.TEXT) for b in common.batches(table)]
    nbytes = common.text_bytes(table)

    def hash_only():
        for column in batches:
            units = words(column)
            ngram_hashes(units, 13, unit_hashes(units))

    def scan():
        for column in batches:
            stage.matches(column)

    hash_s, scan_s = [], []
    for _ in range(repeats):  # interleaved, so both sides see the same machine
        hash_s.append(common.median_seconds(hash_only, 1))
        scan_s.append(common.median_seconds(scan, 1))
    figures = {
        "items": items,
        "index_build_s": built["seconds"],
        "index_peak_rss_bytes": built["peak_rss_bytes"],
        "index_ngrams": built["ngrams"],
        "index_bytes": built["bytes"],
        "documents": len(texts),
        "bytes": nbytes,
        "normalize_and_hash_mb_per_s": nbytes / statistics.median(hash_s) / 1e6,
        "scan_mb_per_s": nbytes / statistics.median(scan_s) / 1e6,
        "scan_vs_normalize_and_hash": statistics.median(hash_s) / statistics.median(scan_s),
    }
    print(
        f"scan {figures['scan_mb_per_s']:.2f} MB/s/core, normalize+hash only {figures['normalize_and_hash_mb_per_s']:.2f} "
        f"MB/s/core: ratio {figures['scan_vs_normalize_and_hash']:.2f}",
        flush=True,
    )
    return figures


def bench_real_benchmarks(docs: int, repeats: int, planted: float) -> dict:
    """GSM8K and HumanEval items planted verbatim in ``planted`` of web-like documents."""
    import gzip

    from benchmarks.web_like import web_like_documents
    from pipeline.core.ngrams import ngram_hashes, unit_hashes
    from pipeline.stages.contamination import CONTAMINATION, ContaminationCheck, ContaminationConfig, words

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
    for row in plants:
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
        )
    )
    stage.setup()
    table = common.text_table(texts)
    batches = common.batches(table)

    def hash_only():
        for batch in batches:
            units = words(batch.column(cols.TEXT))
            ngram_hashes(units, 13, unit_hashes(units))

    def scan():
        return [stage.process(batch).table for batch in batches]

    hash_s, scan_s = [], []
    for _ in range(repeats):
        hash_s.append(common.median_seconds(hash_only, 1))
        scan_s.append(common.median_seconds(scan, 1))
    found = {
        row
        for row, overlaps in enumerate(c for out in scan() for c in out.column(CONTAMINATION).to_pylist())
        if overlaps
    }
    nbytes = common.text_bytes(table)
    return {
        "items": len(items),
        "documents": len(texts),
        "planted_documents": len(plants),
        "found_documents": len(found),
        "recall": len(found & plants) / len(plants) if plants else None,
        "found_without_a_plant": len(found - plants),
        "normalize_and_hash_mb_per_s": nbytes / statistics.median(hash_s) / 1e6,
        "scan_mb_per_s": nbytes / statistics.median(scan_s) / 1e6,
        "scan_vs_normalize_and_hash": statistics.median(hash_s) / statistics.median(scan_s),
    }


def main(argv: list[str]) -> None:
    parser = common.parser("contamination", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser)
    parser.add_argument("--planted", type=float, default=0.01, help="share of documents given an eval item")
    args = parser.parse_args(argv)
    with common.scratch() as tmp:
        figures = bench_contamination(args.docs, args.repeats, tmp)
    figures["real_benchmarks"] = bench_real_benchmarks(args.docs, args.repeats, args.planted)
    print(f"real benchmarks: {json.dumps(figures['real_benchmarks'])}", flush=True)
    common.write_result("contamination", argv, figures)
