"""Contamination quality: false positives on clean real documents and recall of planted
eval items, with the stage's default settings and with every n-gram counting (the rule
before ``min_informative_words`` and ``max_items_per_ngram``: 0 and null).

Clean documents: WikiText-2 paragraphs, Python documentation sections, NLTK speeches, news
and forum text, and web-like pages (benchmarks/clean_text.py, from ../shared/data; about
15,500 documents, none holding an eval item). Eval sets:

- real: GSM8K test (1,319) and HumanEval (164), plus ``short``: GSM8K questions cut to
  their first 5 to 12 words (items shorter than the 13-word n-gram);
- synthetic: ``--items`` items of 40 to 120 words drawn from the clean documents' own word
  stream (seeded), half of them with a generic run spliced in, as math and code items
  have: a counting sequence, the Fibonacci numbers, a row of zeros, letters a, b, c, …, a
  multiplication table, a loop over single-letter variables (13 to 25 words).

Recall: each item (all real ones; ``--recall-items`` synthetic ones) planted in a random
clean document verbatim, with case, whitespace and punctuation changed, and as a 60%
fragment (a contiguous run of 60% of its words); found when the document overlaps that
item. Fragments of short items are shorter than an n-gram and are not scored.

    python -m benchmarks contamination-quality --items 50000
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow as pa

from benchmarks import common

EVERY_NGRAM = {"min_informative_words": 0, "max_items_per_ngram": None}


def _change_surface(text: str, rng: random.Random) -> str:
    out = []
    for word in re.findall(r"\w+", text):
        word = word.upper() if rng.random() < 0.3 else word.capitalize() if rng.random() < 0.3 else word
        out.append(word + rng.choice(["", ",", ";", " -", "...", "!"]))
    return rng.choice([" ", "  ", "\n", "\t "]).join(out)


def _fragment(text: str, rng: random.Random) -> str:
    words = text.split()
    length = max(1, int(len(words) * 0.6))
    start = rng.randrange(len(words) - length + 1)
    return " ".join(words[start : start + length])


FORMS = {"verbatim": lambda text, rng: text, "surface": _change_surface, "fragment_60": _fragment}


def _generic_run(rng: random.Random) -> str:
    length = rng.randint(13, 25)
    kind = rng.randrange(6)
    if kind == 5:
        a, b, run = 0, 1, []
        for _ in range(length):
            run.append(str(a))
            a, b = b, a + b
        return "Fibonacci: " + ", ".join(run)
    if kind == 0:
        start = rng.choice([0, 1])
        return ", ".join(str(i) for i in range(start, start + length))
    if kind == 1:
        return " ".join(["0"] * length)
    if kind == 2:
        return ", ".join("abcdefghijklmnopqrstuvwxyz"[:length])
    if kind == 3:
        k = rng.randint(2, 9)
        return "\n".join(f"{k} x {i} = {k * i}" for i in range(1, length // 4 + 2))
    return "for i in range(n):\n    for j in range(m):\n        c[i][j] = a[i][j] + b[i][j]"


def synthetic_items(clean: dict[str, list[str]], count: int, seed: int = 21) -> list[dict]:
    rng = random.Random(seed)
    # whitespace tokens that are one word each: a URL would bring a 13-gram of its own
    stream = [w for texts in clean.values() for t in texts[:500] for w in t.split() if re.fullmatch(r"\w+[.,;:!?]?", w)]
    items = []
    for i in range(count):
        words = rng.choices(stream, k=rng.randint(40, 120))
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words) + 1), _generic_run(rng))
        items.append({"id": f"s{i}", "question": " ".join(words), "answer": ""})
    return items


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def eval_sets(tmp: Path, clean: dict[str, list[str]], items: int) -> dict[str, tuple[list[dict], dict[str, list[str]]]]:
    """Per case: the stage's benchmarks and, per benchmark, its item texts as indexed."""
    folder = common.shared_data("benchmarks")
    gsm8k = [json.loads(line) for line in (folder / "gsm8k_test.jsonl").read_text().splitlines() if line.strip()]
    humaneval = [
        json.loads(line) for line in gzip.decompress((folder / "HumanEval.jsonl.gz").read_bytes()).splitlines()
    ]
    rng = random.Random(13)
    short = [
        {"id": f"q{i}", "question": " ".join(r["question"].split()[: rng.randint(5, 12)]), "answer": ""}
        for i, r in enumerate(gsm8k)
    ]
    synthetic = synthetic_items(clean, items)
    real = [
        {"name": "gsm8k", "uri": str(folder / "gsm8k_test.jsonl"), "preset": "gsm8k"},
        {"name": "humaneval", "uri": str(folder / "HumanEval.jsonl.gz"), "preset": "humaneval"},
        {"name": "short", "uri": _write_jsonl(tmp / "short.jsonl", short), "preset": "gsm8k"},
    ]
    texts = {
        "gsm8k": [f"{r['question']}\n{r['answer']}" for r in gsm8k],
        "humaneval": [f"{r['prompt']}\n{r['canonical_solution']}" for r in humaneval],
        "short": [f"{r['question']}\n" for r in short],
    }
    synthetic_sets = [{"name": "synthetic", "uri": _write_jsonl(tmp / "synthetic.jsonl", synthetic), "preset": "gsm8k"}]
    return {
        "real": (real, texts),
        "synthetic": (synthetic_sets, {"synthetic": [f"{r['question']}\n" for r in synthetic]}),
    }


def _stage(benchmarks: list[dict], options: dict):
    from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig

    stage = ContaminationCheck(ContaminationConfig(enabled=True, benchmarks=benchmarks, **options))
    stage.setup()
    return stage


def _overlaps(stage, texts: list[str], size: int = 2048) -> list[list]:
    out = []
    for start in range(0, len(texts), size):
        out += stage.overlaps(stage.matches(pa.array(texts[start : start + size], pa.string())))
    return out


def false_positives(stage, clean: dict[str, list[str]]) -> dict:
    """Per source and in all: clean documents that overlap some item, and the items most often
    behind them."""
    figures, culprits, flagged_all, total = {}, {}, 0, 0
    for source, texts in clean.items():
        found = _overlaps(stage, texts)
        flagged = sum(1 for overlap in found if overlap)
        figures[source] = {"documents": len(texts), "flagged": flagged}
        flagged_all, total = flagged_all + flagged, total + len(texts)
        for overlap in found:
            for item, _, _ in overlap:
                key = f"{stage.index.benchmarks[stage.index.item_benchmarks[item]]}/{stage.index.item_names[item]}"
                culprits[key] = culprits.get(key, 0) + 1
    top = sorted(culprits.items(), key=lambda kv: -kv[1])[:5]
    return {"documents": total, "flagged": flagged_all, "rate": flagged_all / total, "sources": figures, "top": top}


def recall(stage, texts: dict[str, list[str]], hosts: list[str], limit: int, seed: int = 17) -> dict:
    """Per benchmark and form: the share of planted items whose document overlaps them."""
    rng = random.Random(seed)
    index = stage.index
    first = {
        b: min(i for i in range(len(index.item_names)) if index.benchmarks[index.item_benchmarks[i]] == b)
        for b in texts
    }
    figures: dict[str, dict[str, float]] = {}
    for benchmark, items in texts.items():
        chosen = sorted(rng.sample(range(len(items)), min(limit, len(items))))
        for form, change in FORMS.items():
            if form == "fragment_60" and benchmark == "short":
                continue
            docs = []
            for i in chosen:
                paragraphs = rng.choice(hosts).split("\n")
                paragraphs.insert(rng.randrange(len(paragraphs) + 1), change(items[i], rng))
                docs.append("\n".join(paragraphs))
            found = _overlaps(stage, docs)
            hits = sum(
                1 for i, overlap in zip(chosen, found) if any(it == first[benchmark] + i for it, _, _ in overlap)
            )
            figures.setdefault(benchmark, {})[form] = hits / len(chosen)
    return figures


def main(argv: list[str]) -> None:
    from benchmarks.clean_text import clean_documents

    parser = common.parser("contamination-quality", __doc__)
    parser.add_argument("--items", type=int, default=50_000, help="synthetic eval items")
    parser.add_argument("--recall-items", type=int, default=2_000, help="synthetic items planted for recall")
    args = parser.parse_args(argv)
    common.shared_data("python_docs")
    clean = clean_documents(common.SHARED_DATA)
    hosts = [t for texts in clean.values() for t in texts]
    figures: dict = {"clean_documents": {k: len(v) for k, v in clean.items()}}
    with common.scratch() as tmp:
        for case, (benchmarks, texts) in eval_sets(tmp, clean, args.items).items():
            for setting, options in (("defaults", {}), ("every_ngram", EVERY_NGRAM)):
                stage = _stage(benchmarks, options)
                fp = false_positives(stage, clean)
                found = recall(stage, texts, hosts, args.recall_items)
                figures[f"{case}/{setting}"] = {"index": stage.index.summary(), "false_positives": fp, "recall": found}
                print(
                    f"{case:9} {setting:11}: {fp['flagged']:,} of {fp['documents']:,} clean documents flagged "
                    f"({fp['rate']:.3%}; top {fp['top'][:3]}); recall {found}",
                    flush=True,
                )
    common.write_result("contamination-quality", argv, figures)
