"""PII scrubbing: the PII stage (windowed Presidio, replacement included, 1,024-row batches)
against naive per-document ``AnalyzerEngine.analyze`` with the same recognizers, on web-like
corpora at three PII densities (benchmarks/web_like.py, from ../shared/data when present)
and on the code-heavy sample corpus; span parity between the two; precision and recall
against gold spans of ../shared/data/pii/presidio_generated_large.json when present.

On these machines one process runs either side up to 1.7x faster or slower than the next
process does, so the ratio is measured in ``--repeats`` fresh processes (3 interleaved pairs
each, medians) and the median across processes is the figure.

    python -m benchmarks pii --docs 8000 --repeats 9
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import statistics
import time

from benchmarks import common
from pipeline.core import columns as cols

PII_RATES = (0.02, 0.1, 0.3)  # shares of web-like documents with a planted contact line


def pii_corpora(docs: int) -> dict[str, list[str]]:
    """Web-like documents with PII planted in 2%, 10% and 30% of them (from ../shared/data),
    and the code-heavy sample corpus."""
    from benchmarks.web_like import web_like_documents

    common.shared_data("nltk")
    corpora = {}
    for rate in PII_RATES:
        corpora[f"web, {rate:.0%} of documents with PII"] = web_like_documents(common.SHARED_DATA, docs, rate, seed=5)
    corpora["sample corpus (Python docs and code)"] = common.docs_table(docs).column(cols.TEXT).to_pylist()
    return corpora


def gold_scores(stage, records: list[dict]) -> dict:
    """Precision and recall per entity type of the stage's spans against gold spans: a
    prediction counts when it overlaps a gold span of the same type."""
    from pipeline.stages.pii import merge_spans

    found = stage.find([r["full_text"] for r in records])
    scores = {}
    for entity in stage.config.entities:
        tp_pred = fp = tp_gold = fn = 0
        for record, spans in zip(records, found):
            gold = [(g["start_position"], g["end_position"]) for g in record["spans"] if g["entity_type"] == entity]
            pred = [(s.start, s.end) for s in merge_spans(spans) if s.entity == entity]
            for a, b in pred:
                if any(a < gb and ga < b for ga, gb in gold):
                    tp_pred += 1
                else:
                    fp += 1
            for ga, gb in gold:
                if any(a < gb and ga < b for a, b in pred):
                    tp_gold += 1
                else:
                    fn += 1
        scores[entity] = {
            "gold": tp_gold + fn,
            "predicted": tp_pred + fp,
            "precision": tp_pred / (tp_pred + fp) if tp_pred + fp else None,
            "recall": tp_gold / (tp_gold + fn) if tp_gold + fn else None,
        }
    return scores


def pii_rates(docs: int, pairs: int) -> dict:
    """One process's side-by-side timing, per corpus: naive per-document
    AnalyzerEngine.analyze and the PII stage, interleaved, in bytes per second.

    Naive Presidio runs at tens of documents per second, so it is timed on slices of the
    corpus (every 30th document, a different offset each time), each unseen, after both
    sides warmed up on other documents: phonenumbers loads region metadata lazily and
    spaCy's tokenizer caches words, so timing the same documents again would measure that
    cache. The stage runs on the whole corpus in 1,024-row batches, replacement included,
    each time starting with empty caches, as a fresh worker does."""
    from pipeline.stages.pii import DEFAULT_ENTITIES, PiiConfig, PiiScrub

    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    analyzer = PiiScrub(PiiConfig(enabled=True, windowed=False))
    analyzer.setup()
    analyzer = analyzer.analyzer
    out = {}
    for name, texts in pii_corpora(docs).items():
        table = common.text_table(texts)
        nbytes = common.text_bytes(table)
        warmup = texts[29::90]
        [analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in warmup]
        stage.find(warmup)
        naive_rates, ours_rates = [], []
        for i in range(pairs):
            piece = texts[i * 3 :: 30]
            started = time.perf_counter()
            [analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in piece]
            naive_rates.append(sum(len(t.encode()) for t in piece) / (time.perf_counter() - started))
            stage.clear_caches()
            started = time.perf_counter()
            [stage.process(b) for b in common.batches(table)]
            ours_rates.append(nbytes / (time.perf_counter() - started))
        out[name] = {
            "naive": statistics.median(naive_rates),
            "ours": statistics.median(ours_rates),
            "bytes": nbytes,
            "documents": len(texts),
        }
    return out


def bench_pii(docs: int, processes: int) -> dict:
    from pipeline.stages.pii import DEFAULT_ENTITIES, PiiConfig, PiiScrub

    per_process = []
    context = multiprocessing.get_context("spawn")
    for _ in range(processes):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            per_process.append(pool.submit(pii_rates, docs, 3).result())
    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    whole = PiiScrub(PiiConfig(enabled=True, windowed=False))
    whole.setup()
    figures: dict = {"processes": processes, "corpora": {}}
    for name, texts in pii_corpora(docs).items():
        naive_rates = [p[name]["naive"] for p in per_process]
        ours_rates = [p[name]["ours"] for p in per_process]
        ratios = [o / n for o, n in zip(ours_rates, naive_rates)]
        parity_docs = texts[1::10]
        full = [
            sorted((r.start, r.end, r.entity_type) for r in doc)
            for doc in (whole.analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in parity_docs)
        ]
        stage.clear_caches()
        mine = [sorted((s.start, s.end, s.entity) for s in doc) for doc in stage.find(parity_docs)]
        total = sum(len(d) for d in full)
        recalled = sum(len(set(a) & set(b)) for a, b in zip(full, mine))
        figures["corpora"][name] = {
            "documents": per_process[0][name]["documents"],
            "bytes": per_process[0][name]["bytes"],
            "naive_mb_per_s_per_core": statistics.median(naive_rates) / 1e6,
            "refinery_mb_per_s_per_core": statistics.median(ours_rates) / 1e6,
            "ratio_vs_naive": statistics.median(ratios),
            "ratio_each_process": ratios,
            "naive_mb_per_s_each_process": [r / 1e6 for r in naive_rates],
            "refinery_mb_per_s_each_process": [r / 1e6 for r in ours_rates],
            "parity_documents": len(parity_docs),
            "documents_with_spans": sum(1 for d in full if d),
            "spans_full_presidio": total,
            "recall_vs_full_presidio": recalled / total if total else None,
            "identical_spans": full == mine,
        }
        print(
            f"{name}: {statistics.median(ratios):.1f}x naive (each process: "
            f"{', '.join(f'{r:.1f}' for r in ratios)}), {statistics.median(ours_rates) / 1e6:.2f} MB/s/core, "
            f"spans identical to full Presidio: {full == mine} ({total} spans)",
            flush=True,
        )
    records_path = common.shared_data("pii/presidio_generated_large.json")
    records = json.loads(records_path.read_text())
    figures["gold"] = gold_scores(stage, records)
    whole_found = [sorted((s.start, s.end, s.entity) for s in d) for d in whole.find([r["full_text"] for r in records])]
    ours_found = [sorted((s.start, s.end, s.entity) for s in d) for d in stage.find([r["full_text"] for r in records])]
    figures["gold_records_identical_to_full_presidio"] = whole_found == ours_found
    return figures


def main(argv: list[str]) -> None:
    parser = common.parser("pii", __doc__)
    common.add_docs(parser)
    common.add_repeats(parser, help="fresh processes that each time both sides; the median across them is reported")
    args = parser.parse_args(argv)
    common.write_result("pii", argv, bench_pii(args.docs, args.repeats))
