"""Word lists: the word_lists stage's ``process`` on 1,024-row batches of web-like documents
(benchmarks/web_like.py, real text from ../shared/data; the sample corpus when it is absent)
with one list of 10,000 entries, against the naive approach: one compiled Python ``re``
alternation of every entry between ``\\b``s (longest first, IGNORECASE), ``findall`` per
document. One core.

The list: 8,000 real words, drawn (seeded) from the vocabulary of WikiText-2 and NLTK's
State of the Union, inaugural and ABC news texts less its 10,000 most frequent words, and
2,000 two- and three-word phrases from the same texts that hold a word outside the 2,000 most
frequent; pseudo-words and phrases of them when ../shared/data is absent. The documents share
sources with that vocabulary, so the list matches often (about 3% of their words): more work
than a bad-words list makes. Its rule rejects documents with at least 2 matches whose words
are more than 5% of the document's, so the ratio's word counting is part of the measurement.

The naive side is so slow (a 10,000-way alternation is tried at every position) that it runs
on the first ``--naive-docs`` documents only. Both sides are timed as seconds per MB of text
in ``--rounds`` fresh processes (common.interleaved), and the medians compared; the stage is
also timed in CPU seconds (``--rounds`` passes in this process), which other processes on a
shared machine do not inflate as they do wall time. The two count the same matches in most
documents; they differ where ``re`` and the stage define words differently (``\\b`` ignores
combining marks; IGNORECASE folds case, Arrow lowers it).

    python -m benchmarks word_lists --docs 8000 --rounds 5
"""

from __future__ import annotations

import collections
import random
import re
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import pyarrow as pa

from benchmarks import common
from pipeline.core import columns as cols

ENTRIES = 10_000
PHRASES = 2_000
MAX_RATIO = 0.05
COMMON_WORDS = 10_000
"""The most frequent words of the vocabulary, left out of the list."""
MIN_MATCHES = 2


def _vocabulary_texts() -> list[str] | None:
    """Running text of WikiText-2 and three NLTK corpora, or None without ../shared/data."""
    root = common.SHARED_DATA
    if not (root / "wikitext2").exists() or not (root / "nltk").exists():
        return None
    texts = [(root / "wikitext2" / name).read_text(encoding="utf-8") for name in ("valid.txt", "test.txt")]
    for name in ("state_union.zip", "inaugural.zip", "abc.zip"):
        with zipfile.ZipFile(root / "nltk" / name) as archive:
            texts += [archive.read(n).decode("utf-8", "replace") for n in archive.namelist() if n.endswith(".txt")]
    return texts


def list_entries(seed: int = 0) -> list[str]:
    """The benchmark's 10,000 entries (see the module's docstring), the same every run."""
    rng = random.Random(seed)
    texts = _vocabulary_texts()
    if texts is None:
        syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
        words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3 * ENTRIES)})
        runs = [rng.choices(words, k=50) for _ in range(PHRASES)]
        frequent: set[str] = set()
    else:
        runs = [re.findall(r"[a-z]+", text.lower()) for text in texts]
        ranked = [word for word, n in collections.Counter(w for run in runs for w in run).most_common() if n >= 2]
        words = sorted(word for word in ranked[COMMON_WORDS:] if len(word) >= 3)
        frequent = set(ranked[:2000])
    chosen = rng.sample(words, ENTRIES - PHRASES)
    phrases: set[str] = set()
    while len(phrases) < PHRASES:
        run = rng.choice(runs)
        length = rng.choice((2, 3))
        if len(run) > length:
            at = rng.randrange(len(run) - length)
            if not frequent.issuperset(run[at : at + length]):
                phrases.add(" ".join(run[at : at + length]))
    return chosen + sorted(phrases)


def documents(docs: int) -> tuple[pa.Table, str]:
    if (common.SHARED_DATA / "nltk").exists():
        from benchmarks.web_like import web_like_documents

        return common.text_table(web_like_documents(common.SHARED_DATA, docs, 0.0, seed=5)), "web-like"
    return common.docs_table(docs), "sample corpus (../shared/data absent)"


def build_stage(entries: list[str], folder: Path):
    from pipeline.stages.word_lists import WordListsConfig, WordListsFilter

    path = folder / "bench.txt"
    path.write_text("\n".join(entries) + "\n", encoding="utf-8")
    word_list = {"name": "bench", "files": {"*": str(path)}, "max_ratio": MAX_RATIO, "min_matches": MIN_MATCHES}
    stage = WordListsFilter(WordListsConfig(enabled=True, lists=[word_list]))
    stage.setup()
    return stage


def naive_pattern(entries: list[str]) -> re.Pattern:
    alternatives = sorted(set(entries), key=lambda e: (-len(e), e))
    return re.compile(r"\b(?:" + "|".join(map(re.escape, alternatives)) + r")\b", re.IGNORECASE)


def sides(docs: int, naive_docs: int) -> dict:
    """Both sides, each returning its seconds per MB of text."""
    table, _ = documents(docs)
    entries = list_entries()
    folder = Path(tempfile.mkdtemp(prefix="word-lists-bench-"))
    stage = build_stage(entries, folder)
    batches = common.batches(table)
    stage_mb = common.text_bytes(table) / 1e6
    pattern = naive_pattern(entries)
    texts = table.column(cols.TEXT).to_pylist()[:naive_docs]
    naive_mb = sum(len(t.encode()) for t in texts) / 1e6

    def stage_side() -> float:
        started = time.perf_counter()
        for batch in batches:
            stage.process(batch)
        return (time.perf_counter() - started) / stage_mb

    def naive_side() -> float:
        started = time.perf_counter()
        for text in texts:
            len(pattern.findall(text))
        return (time.perf_counter() - started) / naive_mb

    return {"stage": stage_side, "naive_re": naive_side}


def agreement(stage, table: pa.Table, entries: list[str], naive_docs: int) -> dict:
    """Documents on which the stage and the naive pattern count the same matches."""
    from pipeline.stages.word_lists import WORD_LIST_COUNTS

    head = table.slice(0, naive_docs)
    counts = stage.process(head).table.column(WORD_LIST_COUNTS).to_pylist()
    ours = [dict(c).get("bench", 0) for c in counts]
    pattern = naive_pattern(entries)
    theirs = [len(pattern.findall(t)) for t in head.column(cols.TEXT).to_pylist()]
    return {
        "documents": len(ours),
        "same_count": sum(a == b for a, b in zip(ours, theirs)),
        "matches_stage": sum(ours),
        "matches_naive_re": sum(theirs),
    }


def bench_word_lists(docs: int, rounds: int, naive_docs: int) -> dict:
    from pipeline.stages.word_lists import WORD_LIST_COUNTS, count_words

    table, corpus = documents(docs)
    entries = list_entries()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        stage = build_stage(entries, Path(tmp))
        setup_seconds = time.perf_counter() - started
        peak_before = common.peak_rss_bytes()
        matched = matches = rejected = 0
        outputs = [stage.process(batch) for batch in common.batches(table)]
        for out in outputs:
            counts = [dict(c).get("bench", 0) for c in out.table.column(WORD_LIST_COUNTS).to_pylist()]
            matched += sum(n > 0 for n in counts)
            matches += sum(counts)
            if out.reject_reasons is not None:
                rejected += len(out.reject_reasons) - out.reject_reasons.null_count
        del outputs
        peak_after = common.peak_rss_bytes()
        cpu_seconds = []
        for _ in range(rounds):
            started = time.process_time()
            for batch in common.batches(table):
                stage.process(batch)
            cpu_seconds.append(time.process_time() - started)
        words = stage.matcher.count(table.column(cols.TEXT))[1].sum()
        same = agreement(stage, table, entries, naive_docs)
    comparison = common.interleaved(
        "benchmarks.word_lists:sides",
        {"docs": docs, "naive_docs": naive_docs},
        rounds,
        reference="naive_re",
        candidates=["stage"],
    )
    seconds_per_mb = comparison["median_seconds"]
    return {
        "corpus": corpus,
        "documents": table.num_rows,
        "bytes": common.text_bytes(table),
        "list": {"entries": len({e.lower() for e in entries}), "phrases": PHRASES, "max_ratio": MAX_RATIO},
        "documents_matched": matched,
        "matches": matches,
        "matched_word_share": round(float(words / count_words(table.column(cols.TEXT)).sum()), 4),
        "documents_rejected": rejected,
        "setup_seconds": round(setup_seconds, 3),
        "stage_mb_per_s_per_core": round(1 / seconds_per_mb["stage"], 2),
        "stage_mb_per_s_each_round": [round(1 / x, 2) for x in comparison["seconds"]["stage"]],
        "stage_mb_per_s_per_core_cpu_time": round(common.text_bytes(table) / 1e6 / statistics.median(cpu_seconds), 2),
        "stage_mb_per_s_cpu_time_each_pass": [round(common.text_bytes(table) / 1e6 / x, 2) for x in cpu_seconds],
        "naive_re_mb_per_s_per_core": round(1 / seconds_per_mb["naive_re"], 4),
        "naive_re_documents": naive_docs,
        "stage_vs_naive_re": comparison["ratio"]["stage"],
        "agreement_with_naive_re": same,
        "peak_rss_bytes_after_setup": peak_before,
        "peak_rss_bytes_after_batches": peak_after,
        "rounds": comparison,
    }


def main(argv: list[str]) -> None:
    parser = common.parser("word_lists", __doc__)
    common.add_docs(parser)
    common.add_rounds(parser)
    parser.add_argument("--naive-docs", type=int, default=100, help="documents the naive side reads")
    args = parser.parse_args(argv)
    common.write_result("word_lists", argv, bench_word_lists(args.docs, args.rounds, args.naive_docs))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
