"""PII scrubbing: the PII stage (windowed Presidio, replacement included, 1,024-row batches)
against Presidio's own ``BatchAnalyzerEngine.analyze_iterator`` (spaCy batches of 64) and naive
per-document ``AnalyzerEngine.analyze``, with the same recognizers, on web-like
corpora at three PII densities (benchmarks/web_like.py, from ../shared/data when present)
and on the code-heavy sample corpus; span parity between the two; precision and recall
against gold spans of ../shared/data/pii/presidio_generated_large.json when present.

On these machines one process runs either side up to 1.7x faster or slower than the next
process does, so the ratio is measured in ``--repeats`` fresh processes (3 interleaved rounds
each, medians; the two Presidio sides alternate which goes first) and the median across
processes is the figure.

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
BATCH_SIZE = 64  # spaCy batch of BatchAnalyzerEngine.analyze_iterator (its default is 1)


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
    from presidio_analyzer import BatchAnalyzerEngine

    from pipeline.stages.pii import DEFAULT_ENTITIES, PiiConfig, PiiScrub

    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    analyzer = PiiScrub(PiiConfig(enabled=True, windowed=False))
    analyzer.setup()
    analyzer = analyzer.analyzer
    batch_analyzer = BatchAnalyzerEngine(analyzer_engine=analyzer)

    def naive(piece: list[str]) -> None:
        for text in piece:
            analyzer.analyze(text, language="en", entities=DEFAULT_ENTITIES)

    def batch(piece: list[str]) -> None:
        batch_analyzer.analyze_iterator(piece, language="en", batch_size=BATCH_SIZE, entities=DEFAULT_ENTITIES)

    out = {}
    for name, texts in pii_corpora(docs).items():
        table = common.text_table(texts)
        nbytes = common.text_bytes(table)
        warmup = texts[29::90]
        naive(warmup)
        batch(texts[59::90])
        stage.find(warmup)
        rates: dict[str, list[float]] = {"naive": [], "batch": [], "ours": []}
        for i in range(pairs):
            # each Presidio side on its own unseen slice; which goes first alternates
            for side, run, piece in [("naive", naive, texts[i * 3 :: 30]), ("batch", batch, texts[i * 3 + 1 :: 30])][
                :: 1 if i % 2 == 0 else -1
            ]:
                started = time.perf_counter()
                run(piece)
                rates[side].append(sum(len(t.encode()) for t in piece) / (time.perf_counter() - started))
            stage.clear_caches()
            started = time.perf_counter()
            [stage.process(b) for b in common.batches(table)]
            rates["ours"].append(nbytes / (time.perf_counter() - started))
        out[name] = {
            **{side: statistics.median(r) for side, r in rates.items()},
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
        batch_rates = [p[name]["batch"] for p in per_process]
        ours_rates = [p[name]["ours"] for p in per_process]
        ratios = [o / n for o, n in zip(ours_rates, naive_rates)]
        batch_ratios = [o / b for o, b in zip(ours_rates, batch_rates)]
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
            "batch_mb_per_s_per_core": statistics.median(batch_rates) / 1e6,
            "ratio_vs_naive": statistics.median(ratios),
            "ratio_each_process": ratios,
            "ratio_vs_batch": statistics.median(batch_ratios),
            "ratio_vs_batch_each_process": batch_ratios,
            "naive_mb_per_s_each_process": [r / 1e6 for r in naive_rates],
            "batch_mb_per_s_each_process": [r / 1e6 for r in batch_rates],
            "refinery_mb_per_s_each_process": [r / 1e6 for r in ours_rates],
            "parity_documents": len(parity_docs),
            "documents_with_spans": sum(1 for d in full if d),
            "spans_full_presidio": total,
            "recall_vs_full_presidio": recalled / total if total else None,
            "identical_spans": full == mine,
        }
        print(
            f"{name}: {statistics.median(batch_ratios):.1f}x BatchAnalyzerEngine (each process: "
            f"{', '.join(f'{r:.1f}' for r in batch_ratios)}), {statistics.median(ratios):.1f}x per-document "
            f"analyze, {statistics.median(ours_rates) / 1e6:.2f} MB/s/core, "
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
