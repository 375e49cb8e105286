"""PII scrubbing: the PII stage with Presidio's recognizers (``recognizers: stock``, windowed,
replacement included, 1,024-row batches) against Presidio's own
``BatchAnalyzerEngine.analyze_iterator`` (spaCy batches of 64) and naive per-document
``AnalyzerEngine.analyze``, with the same recognizers, on web-like corpora at three PII
densities (benchmarks/web_like.py, from ../shared/data when present) and on the code-heavy
sample corpus; span parity between the two. The default ``extended`` recognizers are timed
against ``stock`` in the same rounds. Precision and recall of both against gold spans of
../shared/data/pii/presidio_generated_large.json (per type, over values a real numbering plan
allows, the rest listed with the reason), and the spans each finds in web-like text with
nothing planted.

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
import re
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


def plan_invalid_reason(entity: str, value: str) -> str | None:
    """Why no real numbering plan allows a gold value, or None where one does: a phone number
    valid in no region's plan (phonenumbers' metadata for every region, the value read as
    written, then as an international number), a card number in no issuer's range."""
    import phonenumbers

    from pipeline.stages.pii.recognizers import card_scheme, luhn_valid

    if entity == "PHONE_NUMBER":
        number = re.sub(r"\s*(?:x|ext\.?)\s*\d+$", "", value)
        for candidate in (number, "+" + re.sub(r"^(?:00|011)", "", number)):
            for region in phonenumbers.SUPPORTED_REGIONS:
                try:
                    if phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)):
                        return None
                except phonenumbers.NumberParseException:
                    pass
        return "valid in no region's numbering plan (phonenumbers metadata)"
    if entity == "CREDIT_CARD":
        digits = re.sub(r"\D", "", value)
        if not luhn_valid(digits):
            return "fails the Luhn check"
        if card_scheme(digits) is None:
            return "in no card scheme's IIN range at this length"
    return None


def gold_scores(stage, records: list[dict]) -> dict:
    """Precision and recall per entity type of the stage's spans against gold spans: a
    prediction counts when it overlaps a gold span of the same type. Recall is also given
    over the gold values a real numbering plan allows (``plan_invalid_reason``); the others
    are listed with the reason."""
    from pipeline.stages.pii import merge_spans

    found = stage.find([r["full_text"] for r in records])
    scores: dict = {"entities": {}}
    all_fp = all_pred = 0
    for entity in stage.config.entities:
        tp_pred = fp = tp_gold = fn = valid_gold = valid_found = 0
        missed, excluded, false_values = [], [], []
        for record, spans in zip(records, found):
            gold = [g for g in record["spans"] if g["entity_type"] == entity]
            pred = [(s.start, s.end) for s in merge_spans(spans) if s.entity == entity]
            for a, b in pred:
                if any(a < g["end_position"] and g["start_position"] < b for g in gold):
                    tp_pred += 1
                else:
                    fp += 1
                    false_values.append(record["full_text"][max(0, a - 30) : b + 10])
            for g in gold:
                hit = any(a < g["end_position"] and g["start_position"] < b for a, b in pred)
                tp_gold += hit
                fn += not hit
                reason = plan_invalid_reason(entity, g["entity_value"])
                if reason:
                    excluded.append({"value": g["entity_value"], "reason": reason, "found": hit})
                else:
                    valid_gold += 1
                    valid_found += hit
                    if not hit:
                        missed.append(g["entity_value"])
        all_fp += fp
        all_pred += tp_pred + fp
        scores["entities"][entity] = {
            "gold": tp_gold + fn,
            "predicted": tp_pred + fp,
            "precision": tp_pred / (tp_pred + fp) if tp_pred + fp else None,
            "recall": tp_gold / (tp_gold + fn) if tp_gold + fn else None,
            "gold_plan_valid": valid_gold,
            "recall_plan_valid": valid_found / valid_gold if valid_gold else None,
            "missed_plan_valid": missed,
            "excluded": excluded,
            "false_redactions": false_values,
        }
    scores["false_redactions"] = all_fp
    scores["spans"] = all_pred
    scores["false_redaction_share"] = all_fp / all_pred if all_pred else None
    return scores


def clean_web_spans(stages: dict, docs: int) -> dict:
    """Spans each set of recognizers finds in web-like documents with nothing planted (real
    text: Wikipedia, forum posts, Common Crawl page furniture): per entity type, with the
    phone numbers' text around them, so a reader can tell real contact numbers from years,
    page ranges and ISBNs."""
    from benchmarks.web_like import web_like_documents
    from pipeline.stages.pii import merge_spans

    texts = web_like_documents(common.SHARED_DATA, docs, 0.0, seed=11)
    out = {"documents": len(texts), "megabytes": sum(len(t.encode()) for t in texts) / 1e6}
    for name, stage in stages.items():
        counts: dict[str, int] = {}
        phones = []
        for text, spans in zip(texts, stage.find(texts)):
            for span in merge_spans(spans):
                counts[span.entity] = counts.get(span.entity, 0) + 1
                if span.entity == "PHONE_NUMBER":
                    phones.append(text[max(0, span.start - 30) : span.end + 10])
        out[name] = {"spans": counts, "phone_numbers_in_context": phones}
    return out


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

    stage = PiiScrub(PiiConfig(enabled=True, recognizers="stock"))
    stage.setup()
    extended = PiiScrub(PiiConfig(enabled=True))
    extended.setup()
    analyzer = PiiScrub(PiiConfig(enabled=True, recognizers="stock", windowed=False))
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
        extended.find(warmup)
        rates: dict[str, list[float]] = {"naive": [], "batch": [], "ours": [], "extended": []}
        for i in range(pairs):
            # each Presidio side on its own unseen slice; which goes first alternates
            for side, run, piece in [("naive", naive, texts[i * 3 :: 30]), ("batch", batch, texts[i * 3 + 1 :: 30])][
                :: 1 if i % 2 == 0 else -1
            ]:
                started = time.perf_counter()
                run(piece)
                rates[side].append(sum(len(t.encode()) for t in piece) / (time.perf_counter() - started))
            for side, scrub in [("ours", stage), ("extended", extended)][:: 1 if i % 2 == 0 else -1]:
                scrub.clear_caches()
                started = time.perf_counter()
                [scrub.process(b) for b in common.batches(table)]
                rates[side].append(nbytes / (time.perf_counter() - started))
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
    stage = PiiScrub(PiiConfig(enabled=True, recognizers="stock"))
    stage.setup()
    extended = PiiScrub(PiiConfig(enabled=True))
    extended.setup()
    whole = PiiScrub(PiiConfig(enabled=True, recognizers="stock", windowed=False))
    whole.setup()
    figures: dict = {"processes": processes, "corpora": {}}
    for name, texts in pii_corpora(docs).items():
        naive_rates = [p[name]["naive"] for p in per_process]
        batch_rates = [p[name]["batch"] for p in per_process]
        ours_rates = [p[name]["ours"] for p in per_process]
        ratios = [o / n for o, n in zip(ours_rates, naive_rates)]
        batch_ratios = [o / b for o, b in zip(ours_rates, batch_rates)]
        extended_rates = [p[name]["extended"] for p in per_process]
        extended_ratios = [e / o for e, o in zip(extended_rates, ours_rates)]
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
            "extended_mb_per_s_per_core": statistics.median(extended_rates) / 1e6,
            "extended_vs_stock": statistics.median(extended_ratios),
            "extended_vs_stock_each_process": extended_ratios,
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
            f"spans identical to full Presidio: {full == mine} ({total} spans); extended recognizers "
            f"{statistics.median(extended_ratios):.2f}x stock ({statistics.median(extended_rates) / 1e6:.2f} MB/s/core)",
            flush=True,
        )
    records_path = common.shared_data("pii/presidio_generated_large.json")
    records = json.loads(records_path.read_text())
    figures["gold"] = {"stock": gold_scores(stage, records), "extended": gold_scores(extended, records)}
    for mode, scores in figures["gold"].items():
        per_type = ", ".join(
            f"{e} {v['recall_plan_valid']:.3f}"
            for e, v in scores["entities"].items()
            if v["recall_plan_valid"] is not None
        )
        print(
            f"gold ({mode}): recall of plan-valid values {per_type}; false redactions "
            f"{scores['false_redactions']} of {scores['spans']} spans ({scores['false_redaction_share']:.2%})",
            flush=True,
        )
    figures["clean_web"] = clean_web_spans({"stock": stage, "extended": extended}, docs)
    print(
        "clean web-like text: spans "
        + "; ".join(f"{m}: {figures['clean_web'][m]['spans']}" for m in ("stock", "extended")),
        flush=True,
    )
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
