"""Refinery benchmarks: a named stage or the whole job on a generated corpus of a given size.

Each benchmark prints its figures and writes JSON to benchmarks/results/<name>.json.
Comparisons are ratios measured in the same run (ours vs the raw library or a naive
single-process approach); repeated measurements report the median.

    python benchmarks/run.py job --docs 5000,20000
    python benchmarks/run.py near_dedup --docs 250000,1000000
    python benchmarks/run.py pack --docs 1000000 --copies 1,4
    python benchmarks/run.py pii --docs 8000 --repeats 5
    python benchmarks/run.py contamination --docs 20000 --repeats 5
    python benchmarks/run.py exact_dedup --docs 50000
    python benchmarks/run.py minhash --docs 20000
    python benchmarks/run.py language --docs 20000
    python benchmarks/run.py perplexity --docs 20000
    python benchmarks/run.py quality --docs 20000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import documents as cols  # noqa: E402
from pipeline.sample import build_sample_documents  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("REFINERY_SHARED_DATA") or ROOT.parent / "shared" / "data")


def _cores() -> int:
    return os.cpu_count() or 1


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _docs_table(n: int) -> pa.Table:
    rows, _ = build_sample_documents(n, seed=1)
    return _text_table([r["text"] for r in rows if r["text"].strip()])


def _text_table(texts: list[str]) -> pa.Table:
    return pa.table({
        cols.ID: [str(i) for i in range(len(texts))], cols.TEXT: texts,
        cols.DOMAIN: pa.nulls(len(texts), pa.string()), cols.URL: pa.nulls(len(texts), pa.string()),
        cols.SHARD: ["bench"] * len(texts), cols.ROW: list(range(len(texts))),
        cols.TEXT_BYTES: [len(t.encode()) for t in texts],
    }, schema=cols.BASE_SCHEMA)


def _batches(table: pa.Table, size: int = 1024):
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def _refinery(*args: str) -> None:
    """The CLI in a subprocess, so corpus generation does not count in this process's memory."""
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _tokenizer(tmp: Path, corpus: Path | None = None) -> Path:
    if corpus is None:
        corpus = tmp / "tok_corpus"
        _refinery("sample", str(corpus), "--docs", "3000", "--shards", "2", "--seed", "5")
    model = tmp / "bench.sp.model"
    _refinery("train-tokenizer", str(corpus), str(model), "--vocab-size", "8000")
    return model


def _link_copies(corpus: Path, out: Path, copies: int) -> None:
    """``copies`` hard links of every shard of ``corpus``: a bigger input at no disk cost."""
    out.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for shard in sorted(corpus.glob("*.parquet")):
            os.link(shard, out / f"copy{copy}-{shard.name}")


def _pack_run(source: Path, out: Path, model: Path, factor: int, overrides: list[str]) -> dict:
    from pipeline.config import apply_override, load_job_spec
    from pipeline.phases.annotate import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.phases.mix import run_mix
    from pipeline.phases.pack import run_pack, write_manifest
    from pipeline.phases.tokenize import run_tokenize
    from pipeline.progress import Progress
    from pipeline.runner import PeakMemory, ensure_ray

    spec = {"name": f"pack-x{factor}", "input": {"uri": str(source), "id_column": "id"},
            "output": {"uri": str(out), "write_rejects": False},
            "stages": {"language": {"enabled": False}, "exact_dedup": {"enabled": False},
                       "near_dedup": {"enabled": False}, "tokenize": {"model": str(model)}}}
    for override in overrides:
        apply_override(spec, override)
    spec = load_job_spec(spec)
    ensure_ray(spec.ray)
    quiet = Progress(quiet=True)
    annotate_stats = run_annotate(spec, discover_shards(spec), quiet, _cores())
    marker = run_dedup(spec, annotate_stats, quiet)
    seconds, peaks = {}, {}
    with PeakMemory(interval_s=0.2) as memory:
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            tokenize_stats = run_tokenize(spec, annotate_stats, marker["removals_version"], quiet, _cores())
        seconds["tokenize"], peaks["tokenize"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            plan, _ = run_mix(spec, tokenize_stats, quiet, _cores())
        seconds["mix"], peaks["mix"] = time.perf_counter() - started, phase.peak
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as phase:
            pack_stats = run_pack(spec, plan, quiet, _cores())
            write_manifest(spec, plan, pack_stats, annotate_stats)
        seconds["pack"], peaks["pack"] = time.perf_counter() - started, phase.peak
    total = sum(seconds.values())
    nbytes = sum(s["tokenized_bytes"] for s in tokenize_stats)
    return {
        "copies_of_corpus": factor, "documents": sum(s["tokenized_docs"] for s in tokenize_stats),
        "input_bytes": sum(s["input_bytes"] for s in annotate_stats), "text_bytes": nbytes,
        "tokens": sum(s["tokens"] for s in pack_stats), "output_shards": len(pack_stats),
        "tokens_per_output_shard": sum(s["tokens"] for s in pack_stats) / len(pack_stats),
        "seconds": seconds, "refinery_s": total, "mb_per_s_per_core": nbytes / total / 1e6 / _cores(),
        "peak_rss_bytes": memory.peak, "peak_rss_sum_bytes": memory.peak_total, "peak_rss_by_phase": peaks,
    }


def bench_pack(docs: int, copies: list[int], tmp: Path, overrides: list[str]) -> dict:
    """The tokenize, mix and pack phases (tokenize, shuffle, pack, write shards and manifest)
    at each input size, against raw SentencePieceProcessor.encode(num_threads=cores) on the
    same documents; peak RSS of those phases as the input grows. Annotate runs first with
    every filter off and is not timed."""
    import pyarrow.parquet as pq
    import sentencepiece as spm

    corpus = tmp / "corpus"
    _refinery("sample", str(corpus), "--docs", str(docs), "--shards", str(max(8, docs // 62500)), "--seed", "3")
    model = _tokenizer(tmp, corpus)
    runs = []
    for factor in copies:
        source = tmp / f"input_x{factor}"
        _link_copies(corpus, source, factor)
        # Each size in a fresh process with its own Ray, so no run inherits another's heap.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(_pack_run, source, tmp / f"out_x{factor}", model, factor, overrides).result())
    texts = []
    for shard in sorted(corpus.glob("*.parquet")):
        texts += [t for t in pq.read_table(shard, columns=["text"]).column("text").to_pylist() if t and t.strip()]
    raw = spm.SentencePieceProcessor(model_file=str(model))
    raw_tokens = 0
    started = time.perf_counter()
    for i in range(0, len(texts), 10000):  # batches, or the token lists alone would take ~30 bytes per token
        raw_tokens += sum(map(len, raw.encode(texts[i:i + 10000], num_threads=_cores(), add_eos=True)))
    raw_s = time.perf_counter() - started
    first = runs[0]
    assert raw_tokens == first["tokens"] and len(texts) == first["documents"]
    last = runs[-1]
    return {
        "runs": runs, "raw_sentencepiece_s": raw_s, "raw_tokens": raw_tokens,
        "ratio_vs_raw": raw_s / first["refinery_s"],
        "raw_mb_per_s_per_core": first["text_bytes"] / raw_s / 1e6 / _cores(),
        "rss_growth": {"input": last["input_bytes"] / first["input_bytes"],
                       "peak_rss": last["peak_rss_bytes"] / first["peak_rss_bytes"],
                       "peak_rss_sum": last["peak_rss_sum_bytes"] / first["peak_rss_sum_bytes"]},
    }


def bench_exact_dedup(docs: int, repeats: int, tmp: Path) -> dict:
    """Key hashing throughput, and the global Ray Data dedup vs a single-process dict."""
    import ray

    from pipeline.stages.exact_dedup import EXACT_HASH, ExactDedupConfig, ExactDedupKeys, ExactDuplicates

    table = _docs_table(docs)
    stage = ExactDedupKeys(ExactDedupConfig())
    keyed = pa.concat_tables([stage.process(b).table for b in _batches(table)])
    hash_s = _median_seconds(lambda: [stage.process(b) for b in _batches(table)], repeats)
    keys = keyed.select([cols.SHARD, cols.ROW, cols.ID, EXACT_HASH])

    def single_process():
        first: dict[int, str] = {}
        removed = 0
        for h in keys.column(EXACT_HASH).to_pylist():
            if h in first:
                removed += 1
            else:
                first[h] = "x"
        return removed

    _start_ray()
    dataset = ray.data.from_arrow(_batches(keys, 8192))
    global_stage = ExactDuplicates(ExactDedupConfig())
    ray_s = _median_seconds(lambda: global_stage.find_removals(dataset, ["bench"]).materialize().count(), repeats)
    dict_s = _median_seconds(single_process, repeats)
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
    return {"documents": table.num_rows, "bytes": nbytes, "hash_keys_s": hash_s,
            "hash_mb_per_s_per_core": nbytes / hash_s / 1e6, "global_ray_s": ray_s, "single_process_dict_s": dict_s,
            "removed": single_process()}


def bench_minhash(docs: int, repeats: int, tmp: Path) -> dict:
    """MinHashSignatures (normalize + shingle + sign, vectorized) vs a per-document loop of
    datasketch.MinHash.update_batch with datasketch's default hash, on pre-split words."""
    import datasketch

    from pipeline.stages.near_dedup import MinHashSignatures, NearDedupConfig, dedup_units

    table = _docs_table(docs)
    config = NearDedupConfig()
    stage = MinHashSignatures(config)
    words = dedup_units(table.column(cols.TEXT).combine_chunks(), "word").to_pylist()
    shingled = [[" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))] for w in words]

    def datasketch_loop():
        for shingles in shingled:
            m = datasketch.MinHash(num_perm=config.num_perm, seed=config.seed)
            m.update_batch(shingles)

    ours_s = _median_seconds(lambda: [stage.process(b) for b in _batches(table)], repeats)
    baseline_s = _median_seconds(datasketch_loop, repeats)
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
    return {"documents": table.num_rows, "bytes": nbytes, "num_perm": config.num_perm, "ngram": config.ngram,
            "refinery_s": ours_s, "datasketch_update_batch_loop_s": baseline_s, "speedup": baseline_s / ours_s,
            "refinery_docs_per_s_per_core": table.num_rows / ours_s,
            "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6}


def bench_language(docs: int, repeats: int, tmp: Path) -> dict:
    """LanguageId on 1,024-row batches vs one raw fastText predict over the same prepared
    texts; plus accuracy per language on ../shared/data/lingua_sentences when present."""
    import fasttext

    from pipeline.stages.language import LANG, LanguageConfig, LanguageId, bundled_model, prepare_text

    table = _docs_table(docs)
    stage = LanguageId(LanguageConfig())
    stage.setup()
    raw = fasttext.load_model(bundled_model())
    prepared = prepare_text(table.column(cols.TEXT), LanguageConfig().max_chars)
    ours_s = _median_seconds(lambda: [stage.process(b) for b in _batches(table)], repeats)
    raw_s = _median_seconds(lambda: raw.predict(prepared, k=1), repeats)
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
    figures = {"documents": table.num_rows, "bytes": nbytes, "refinery_s": ours_s, "raw_predict_s": raw_s,
               "ratio_vs_raw": raw_s / ours_s, "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6}
    lingua = SHARED_DATA / "lingua_sentences"
    if lingua.is_dir():
        accuracy = {}
        for path in sorted(lingua.glob("*.txt")):
            sentences = [line for line in path.read_text().splitlines() if line.strip()]
            labels = stage.process(pa.table({cols.TEXT: sentences})).table.column(LANG).to_pylist()
            accuracy[path.stem] = sum(label == path.stem for label in labels) / len(labels)
        figures["lingua_accuracy"] = accuracy
        figures["lingua_mean_accuracy"] = statistics.mean(accuracy.values())
    return figures


def _gold_scores(stage, records: list[dict]) -> dict:
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
        scores[entity] = {"gold": tp_gold + fn, "predicted": tp_pred + fp,
                          "precision": tp_pred / (tp_pred + fp) if tp_pred + fp else None,
                          "recall": tp_gold / (tp_gold + fn) if tp_gold + fn else None}
    return scores


PII_RATES = (0.02, 0.1, 0.3)  # shares of web-like documents with a planted contact line


def _pii_corpora(docs: int) -> dict[str, list[str]]:
    """The benchmark's corpora: web-like documents from ../shared/data with PII planted in
    2%, 10% and 30% of them, and the code-heavy sample corpus."""
    corpora = {}
    if (SHARED_DATA / "nltk").exists():
        from web_like import web_like_documents

        for rate in PII_RATES:
            corpora[f"web, {rate:.0%} of documents with PII"] = web_like_documents(SHARED_DATA, docs, rate, seed=5)
    corpora["sample corpus (Python docs and code)"] = _docs_table(docs).column(cols.TEXT).to_pylist()
    return corpora


def _pii_rates(docs: int, pairs: int) -> dict:
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
    for name, texts in _pii_corpora(docs).items():
        table = _text_table(texts)
        nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
        warmup = texts[29::90]
        [analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in warmup]
        stage.find(warmup)
        naive_rates, ours_rates = [], []
        for i in range(pairs):
            piece = texts[i * 3::30]
            started = time.perf_counter()
            [analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in piece]
            naive_rates.append(sum(len(t.encode()) for t in piece) / (time.perf_counter() - started))
            stage.clear_caches()
            started = time.perf_counter()
            [stage.process(b) for b in _batches(table)]
            ours_rates.append(nbytes / (time.perf_counter() - started))
        out[name] = {"naive": statistics.median(naive_rates), "ours": statistics.median(ours_rates),
                     "bytes": nbytes, "documents": len(texts)}
    return out


def bench_pii(docs: int, processes: int, tmp: Path) -> dict:
    """The PII stage (windowed Presidio, replacement included) vs naive per-document
    AnalyzerEngine.analyze with the same recognizers, on web-like corpora at three PII
    densities and on the code-heavy sample corpus (benchmarks/web_like.py); span parity
    between the two; precision and recall against gold spans on
    ../shared/data/pii/presidio_generated_large.json when present.

    On these machines one process runs either side up to 1.7x faster or slower than the
    next process does, so the ratio is measured in ``processes`` fresh processes
    (``--repeats``; 3 interleaved pairs each, medians) and the median across processes is
    the figure."""
    import concurrent.futures

    from pipeline.stages.pii import DEFAULT_ENTITIES, PiiConfig, PiiScrub

    per_process = []
    context = multiprocessing.get_context("spawn")
    for _ in range(processes):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            per_process.append(pool.submit(_pii_rates, docs, 3).result())
    stage = PiiScrub(PiiConfig(enabled=True))
    stage.setup()
    whole = PiiScrub(PiiConfig(enabled=True, windowed=False))
    whole.setup()
    figures: dict = {"processes": processes, "corpora": {}}
    for name, texts in _pii_corpora(docs).items():
        naive_rates = [p[name]["naive"] for p in per_process]
        ours_rates = [p[name]["ours"] for p in per_process]
        ratios = [o / n for o, n in zip(ours_rates, naive_rates)]
        parity_docs = texts[1::10]
        full = [sorted((r.start, r.end, r.entity_type) for r in doc) for doc in
                (whole.analyzer.analyze(t, language="en", entities=DEFAULT_ENTITIES) for t in parity_docs)]
        stage.clear_caches()
        mine = [sorted((s.start, s.end, s.entity) for s in doc) for doc in stage.find(parity_docs)]
        total = sum(len(d) for d in full)
        recalled = sum(len(set(a) & set(b)) for a, b in zip(full, mine))
        figures["corpora"][name] = {
            "documents": per_process[0][name]["documents"], "bytes": per_process[0][name]["bytes"],
            "naive_mb_per_s_per_core": statistics.median(naive_rates) / 1e6,
            "refinery_mb_per_s_per_core": statistics.median(ours_rates) / 1e6,
            "ratio_vs_naive": statistics.median(ratios), "ratio_each_process": ratios,
            "naive_mb_per_s_each_process": [r / 1e6 for r in naive_rates],
            "refinery_mb_per_s_each_process": [r / 1e6 for r in ours_rates],
            "parity_documents": len(parity_docs), "documents_with_spans": sum(1 for d in full if d),
            "spans_full_presidio": total, "recall_vs_full_presidio": recalled / total if total else None,
            "identical_spans": full == mine,
        }
        print(f"{name}: {statistics.median(ratios):.1f}x naive (each process: "
              f"{', '.join(f'{r:.1f}' for r in ratios)}), {statistics.median(ours_rates) / 1e6:.2f} MB/s/core, "
              f"spans identical to full Presidio: {full == mine} ({total} spans)", flush=True)
    records_path = SHARED_DATA / "pii" / "presidio_generated_large.json"
    if records_path.exists():
        records = json.loads(records_path.read_text())
        figures["gold"] = _gold_scores(stage, records)
        whole_found = [sorted((s.start, s.end, s.entity) for s in d) for d in whole.find([r["full_text"] for r in records])]
        ours_found = [sorted((s.start, s.end, s.entity) for s in d) for d in stage.find([r["full_text"] for r in records])]
        figures["gold_records_identical_to_full_presidio"] = whole_found == ours_found
    return figures


def bench_perplexity(docs: int, repeats: int, tmp: Path) -> dict:
    """The Perplexity stage (CCNet normalization + sentencepiece + KenLM per line, on 1,024-row
    batches) vs a raw loop of sentencepiece encode + kenlm score over the same lines, already
    normalized, on one core."""
    import kenlm
    import sentencepiece as spm

    from pipeline.lm_training import train_perplexity_model
    from pipeline.stages.language import LANG
    from pipeline.stages.perplexity import Perplexity, PerplexityConfig, ccnet_normalize

    reference = tmp / "lm_corpus"
    _refinery("sample", str(reference), "--docs", "5000", "--shards", "2", "--seed", "9")
    pair = train_perplexity_model(str(reference), str(tmp / "lm"), "en", order=5)
    table = _docs_table(docs)
    table = table.append_column(LANG, pa.array(["en"] * table.num_rows))
    stage = Perplexity(PerplexityConfig(enabled=True, models={"en": {"lm": pair["lm"], "sp": pair["sp"]}}))
    stage.setup()
    lm, sp = kenlm.Model(pair["lm"]), spm.SentencePieceProcessor(model_file=pair["sp"])
    lines = [n for text in table.column(cols.TEXT).to_pylist() for n in map(ccnet_normalize, text.split("\n")) if n]

    def raw_loop():
        for line in lines:
            lm.score(" ".join(sp.encode(line, out_type=str)))

    ours_s = _median_seconds(lambda: [stage.process(b) for b in _batches(table)], repeats)
    raw_s = _median_seconds(raw_loop, repeats)
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
    return {"documents": table.num_rows, "bytes": nbytes, "lines": len(lines), "lm_order": 5,
            "refinery_s": ours_s, "raw_loop_s": raw_s, "ratio_vs_raw": raw_s / ours_s,
            "refinery_mb_per_s_per_core": nbytes / ours_s / 1e6}


def bench_quality(docs: int, repeats: int, tmp: Path) -> dict:
    """The QualityRules stage, every family on, on 1,024-row batches, one core."""
    from pipeline.stages.quality_rules import QualityRules, QualityRulesConfig

    table = _docs_table(docs)
    stage = QualityRules(QualityRulesConfig(enabled=True))
    stage.setup()
    seconds = _median_seconds(lambda: [stage.process(b) for b in _batches(table)], repeats)
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())
    return {"documents": table.num_rows, "bytes": nbytes, "refinery_s": seconds,
            "mb_per_s_per_core": nbytes / seconds / 1e6, "docs_per_s_per_core": table.num_rows / seconds}


def _start_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=_cores(), include_dashboard=False, logging_level=logging.WARNING)
        import ray.data
        from ray.data.context import ShuffleStrategy

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


def bench_near_dedup(sizes: list[int], tmp: Path, overrides: list[str]) -> dict:
    """The dedup phase alone (exact + near dedup, default settings) after annotate, at each
    size: wall time, peak RSS of any process, and growth between sizes."""
    from pipeline.config import apply_override, load_job_spec
    from pipeline.phases.annotate import discover_shards, run_annotate
    from pipeline.phases.dedup import run_dedup
    from pipeline.progress import Progress
    from pipeline.runner import PeakMemory, ensure_ray

    model = None
    runs = []
    for n in sizes:
        corpus = tmp / f"corpus_{n}"
        _refinery("sample", str(corpus), "--docs", str(n), "--shards", str(max(8, n // 62500)), "--seed", "3")
        model = model or _tokenizer(tmp, corpus)
        spec = {"name": f"near-{n}", "input": {"uri": str(corpus), "id_column": "id"},
                "output": {"uri": str(tmp / f"out_{n}")}, "stages": {"tokenize": {"model": str(model)}}}
        for override in overrides:
            apply_override(spec, override)
        spec = load_job_spec(spec)
        ensure_ray(spec.ray)
        started = time.perf_counter()
        stats = run_annotate(spec, discover_shards(spec), Progress(quiet=True), _cores())
        annotate_s = time.perf_counter() - started
        started = time.perf_counter()
        with PeakMemory(interval_s=0.2) as memory:
            marker = run_dedup(spec, stats, Progress(quiet=True))
        dedup_s = time.perf_counter() - started
        docs = sum(s["annotated_docs"] for s in stats)
        runs.append({
            "documents": n, "annotated_docs": docs, "bytes": sum(s["input_bytes"] for s in stats),
            "annotate_s": annotate_s, "dedup_s": dedup_s, "dedup_docs_per_s_per_core": docs / dedup_s / _cores(),
            "peak_rss_bytes": memory.peak, "removed": marker["removed_total"],
            "removed_by_stage": _removed_by_stage(marker),
        })
    return {"runs": runs, "growth": _growth(runs, "dedup_s")}


def _growth(runs: list[dict], seconds_key: str) -> dict | None:
    """How documents, wall time and peak RSS grow from the smallest run to the largest."""
    if len(runs) < 2:
        return None
    first, last = runs[0], runs[-1]
    return {"documents": last["documents"] / first["documents"], "wall": last[seconds_key] / first[seconds_key],
            "peak_rss": last["peak_rss_bytes"] / first["peak_rss_bytes"]}


def _removed_by_stage(marker: dict) -> dict[str, int]:
    totals: dict[str, int] = {}
    for stages in marker["removed_by_shard"].values():
        for stage, reasons in stages.items():
            totals[stage] = totals.get(stage, 0) + sum(reasons.values())
    return totals


def bench_job(sizes: list[int], tmp: Path, overrides: list[str]) -> dict:
    """The whole quickstart-shaped job at each size; cost growth between sizes."""
    from pipeline import run_job
    from pipeline.config import apply_override
    from pipeline.progress import Progress

    model = None
    runs = []
    _start_ray()  # so that no run's wall time includes starting Ray
    for n in sizes:
        corpus = tmp / f"corpus_{n}"
        _refinery("sample", str(corpus), "--docs", str(n), "--shards", "8", "--seed", "3")
        model = model or _tokenizer(tmp, corpus)
        spec = {
            "name": f"bench-{n}", "input": {"uri": str(corpus), "id_column": "id"},
            "output": {"uri": str(tmp / f"out_{n}")},
            "stages": {"tokenize": {"model": str(model)}, "pack": {"seq_len": 2048}},
        }
        for override in overrides:
            apply_override(spec, override)
        started = time.perf_counter()
        result = run_job(spec, progress=Progress(quiet=True))
        wall = time.perf_counter() - started
        totals = result.report["totals"]
        runs.append({
            "documents": n, "bytes": totals["input_bytes"], "wall_s": wall,
            "docs_per_s_per_core": n / wall / _cores(), "mb_per_s_per_core": totals["input_bytes"] / wall / 1e6 / _cores(),
            "peak_rss_bytes": result.report["peak_rss_bytes"],
            "phases": {p["name"]: p["seconds"] for p in result.report["phases"]},
        })
    return {"runs": runs, "growth": _growth(runs, "wall_s")}


def _build_index_in_child(eval_uri: str, ngram: int) -> dict:
    """Builds a contamination index in a fresh process: seconds and the process's peak RSS."""
    from pipeline.stages.contamination import ContaminationConfig, build_index

    started = time.perf_counter()
    index = build_index(ContaminationConfig(enabled=True, ngram=ngram, benchmarks=[
        {"name": "synthetic", "uri": eval_uri, "fields": ["question", "answer"]}]))
    return {"seconds": time.perf_counter() - started, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            **index.summary()}


def bench_contamination(docs: int, repeats: int, tmp: Path, items: int = 100_000) -> dict:
    """Contamination index build for ``items`` eval items (time and peak RSS, in a fresh
    process) and the scan (normalize, hash every 13-gram, look it up) vs a loop that only
    normalizes and hashes, on web-like documents; both in 1,024-row batches on one core.

    The items are as long as GSM8K's (question + answer, about 120 words)."""
    import concurrent.futures
    import random

    from pipeline.minhash import ngram_hashes, unit_hashes
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig, words

    if (SHARED_DATA / "nltk").exists():
        from web_like import web_like_documents

        texts = web_like_documents(SHARED_DATA, docs, 0.0, seed=3)
    else:
        texts = _docs_table(docs).column(cols.TEXT).to_pylist()
    # Items are word sequences drawn from the documents' own word stream: real word
    # frequencies, items as long as GSM8K's, and (as in a clean corpus) no item text in the
    # documents.
    rng = random.Random(0)
    stream = [w for t in texts[:2000] for w in t.split()]
    eval_path = tmp / "eval.jsonl"
    with eval_path.open("w") as handle:
        for i in range(items):
            handle.write(json.dumps({"question": f"item {i}: " + " ".join(rng.choices(stream, k=80)),
                                     "answer": " ".join(rng.choices(stream, k=40))}) + "\n")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        built = pool.submit(_build_index_in_child, str(eval_path), 13).result()
    print(f"index of {items:,} items: {built['seconds']:.1f} s, peak RSS {built['peak_rss_bytes'] / 2**30:.2f} GiB, "
          f"{built['ngrams']:,} n-grams", flush=True)

    stage = ContaminationCheck(ContaminationConfig(enabled=True, benchmarks=[
        {"name": "synthetic", "uri": str(eval_path), "fields": ["question", "answer"]}]))
    stage.setup()
    table = _text_table(texts)
    batches = [b.column(cols.TEXT) for b in _batches(table)]
    nbytes = int(pa.compute.sum(table.column(cols.TEXT_BYTES)).as_py())

    def hash_only():
        for column in batches:
            units = words(column)
            ngram_hashes(units, 13, unit_hashes(units))

    def scan():
        for column in batches:
            stage.matches(column)

    hash_s, scan_s = [], []
    for _ in range(repeats):  # interleaved, so both sides see the same machine
        hash_s.append(_median_seconds(hash_only, 1))
        scan_s.append(_median_seconds(scan, 1))
    figures = {
        "items": items, "index_build_s": built["seconds"], "index_peak_rss_bytes": built["peak_rss_bytes"],
        "index_ngrams": built["ngrams"], "index_bytes": built["bytes"], "documents": len(texts), "bytes": nbytes,
        "normalize_and_hash_mb_per_s": nbytes / statistics.median(hash_s) / 1e6,
        "scan_mb_per_s": nbytes / statistics.median(scan_s) / 1e6,
        "scan_vs_normalize_and_hash": statistics.median(hash_s) / statistics.median(scan_s),
    }
    print(f"scan {figures['scan_mb_per_s']:.2f} MB/s/core, normalize+hash only {figures['normalize_and_hash_mb_per_s']:.2f} "
          f"MB/s/core: ratio {figures['scan_vs_normalize_and_hash']:.2f}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["job", "near_dedup", "pack", "pii", "contamination", "exact_dedup", "minhash",
                                         "language", "perplexity", "quality"])
    parser.add_argument("--docs", default="20000",
                        help="documents; for 'job' and 'near_dedup' a comma-separated list of sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", default="1,4",
                        help="for 'pack': input sizes as copies of the generated corpus (hard links)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="job spec override for 'job' and 'near_dedup', e.g. --set stages.near_dedup.verify=none")
    args = parser.parse_args()
    sizes = [int(x) for x in args.docs.split(",")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.name == "job":
            figures = bench_job(sizes, tmp, args.set)
        elif args.name == "near_dedup":
            figures = bench_near_dedup(sizes, tmp, args.set)
        elif args.name == "pii":
            figures = bench_pii(sizes[0], args.repeats, tmp)
        elif args.name == "contamination":
            figures = bench_contamination(sizes[0], args.repeats, tmp)
        elif args.name == "pack":
            figures = bench_pack(sizes[0], [int(x) for x in args.copies.split(",")], tmp, args.set)
        elif args.name == "minhash":
            figures = bench_minhash(sizes[0], args.repeats, tmp)
        elif args.name == "language":
            figures = bench_language(sizes[0], args.repeats, tmp)
        elif args.name == "perplexity":
            figures = bench_perplexity(sizes[0], args.repeats, tmp)
        elif args.name == "quality":
            figures = bench_quality(sizes[0], args.repeats, tmp)
        else:
            figures = bench_exact_dedup(sizes[0], args.repeats, tmp)
    result = {
        "benchmark": args.name, "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "machine": {"cores": _cores(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version()},
        "peak_rss_driver_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "figures": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
