"""Which n-grams count: a generic run (numbers, single letters) or a template phrase in an
eval item does not flag a clean document by itself; short items and items with no counting
n-gram are matched whole; fragments are still found; the rule holds on clean real text."""

import gzip
import json
import random
import re

import pyarrow as pa
import pytest

from pipeline.stages.contamination import ContaminationCheck, ContaminationConfig
from pipeline.stages.contamination.report import contamination_report, render_markdown
from tests.helpers import SHARED_DATA
from tests.helpers.documents import docs_table

COUNTING = ", ".join(str(i) for i in range(1, 14))  # 1, 2, ..., 13
FIBONACCI = "0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233"
LETTERS = ", ".join("abcdefghijklm")

ITEMS = [
    f"Tom writes the numbers {COUNTING} on cards and shuffles the deck twice. "
    "How many cards show an even number after his sister removes every card above nine?",
    f"The first terms of the Fibonacci sequence are {FIBONACCI}. Write a function that "
    "returns the sum of the terms below a limit given by the caller.",
    f"Label the shelves {LETTERS} from left to right; the librarian moves every second "
    "shelf to the reading room. Which labels remain in the corridor?",
]

CLEAN = [
    # a numbered list of technical documentation: the markers make the counting run
    "Steps:\n" + "\n".join(f"{i}." for i in range(1, 16)) + "\nRun the installer again afterwards.",
    f">>> list(fib(15))\n[{FIBONACCI}, 377]",
    f"Options {LETTERS}, n and o select the output format of the report.",
    "Line numbers: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
]


def _stage(tmp_path, items: list[str], **options) -> ContaminationCheck:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"question": text, "answer": ""}) + "\n" for text in items))
    config = ContaminationConfig(
        enabled=True, benchmarks=[{"name": "b", "uri": str(path), "preset": "gsm8k"}], **options
    )
    stage = ContaminationCheck(config)
    stage.setup()
    return stage


def _found(stage: ContaminationCheck, texts: list[str]) -> list[list[int]]:
    return [[item for item, _, _ in overlap] for overlap in stage.overlaps(stage.matches(pa.array(texts)))]


def _surface(text: str) -> str:
    return "  ".join(w.upper() + "," for w in re.findall(r"\w+", text))


def test_a_generic_run_in_an_item_does_not_flag_a_clean_document_by_itself(tmp_path):
    stage = _stage(tmp_path, ITEMS)
    assert _found(stage, CLEAN) == [[], [], [], []]
    # Every n-gram counting (the rule before): each clean document matches an item.
    every = _stage(tmp_path, ITEMS, min_informative_words=0)
    assert all(_found(every, CLEAN))
    # The items themselves are still found, whole and in fragments around the generic run.
    assert _found(stage, [f"Intro.\n{text}\nOutro." for text in ITEMS]) == [[0], [1], [2]]
    fragments = [" ".join(text.split()[4:30]) for text in ITEMS]
    assert _found(stage, fragments) == [[0], [1], [2]]
    assert _found(stage, [_surface(text) for text in ITEMS]) == [[0], [1], [2]]
    assert stage.index.generic_ngrams > 0 and not stage.index.item_whole.any()


def test_short_items_are_found_verbatim_and_with_surface_changes(tmp_path):
    short = ["What is the capital of Peru? Lima", "Who wrote Hamlet? Shakespeare", "Is 17 a prime number? Yes"]
    for options in ({}, {"min_matching_ngrams": 2}):  # a whole item overlaps whatever the thresholds
        stage = _stage(tmp_path, short + ITEMS, **options)
        docs = [f"Quiz night.\n{short[0]}\nMore later.", _surface(short[1]), "is 17 A PRIME number...yes!!"]
        assert _found(stage, docs) == [[0], [1], [2]], options
        assert _found(stage, ["What is the capital of Peru? Nobody knows.", "Who wrote Hamlet, then?"]) == [[], []]
        assert stage.index.item_whole[:3].all() and (stage.index.item_ngrams[:3] == 1).all()


def test_an_item_with_no_counting_ngram_is_matched_whole(tmp_path):
    run = ", ".join(str(i) for i in range(1, 21))  # 20 words: eight 13-grams, none informative
    stage = _stage(tmp_path, [run, *ITEMS])
    assert stage.index.item_whole[0] and stage.index.item_ngrams[0] == 8
    found = _found(stage, [f"Count: {run}.", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19", CLEAN[3]])
    assert found == [[0], [], [0]]


def test_template_ngrams_shared_by_many_items_do_not_count(tmp_path):
    preamble = "Read the passage below carefully and answer the question that follows it with one word only."
    rng = random.Random(3)
    vocabulary = "amber basalt cedar dune ember fjord garnet heron iris jasper kelp lichen marsh".split()
    items = [f"{preamble} Passage {i}: {' '.join(rng.sample(vocabulary, k=12))}?" for i in range(60)]
    stage = _stage(tmp_path, items)
    assert _found(stage, [f"A guide to the test says: {preamble}"]) == [[]]
    assert _found(stage, [f"Seen online: {items[7]}"]) == [[7]]
    assert len(_found(_stage(tmp_path, items, max_items_per_ngram=None), [preamble])[0]) == 60
    assert _found(_stage(tmp_path, items, max_items_per_ngram=100), [preamble]) == [list(range(60))]


def test_report_names_what_did_not_count(tmp_path):
    stage = _stage(tmp_path, ["Who wrote Hamlet? Shakespeare", *ITEMS])
    stage.process(docs_table([ITEMS[0], CLEAN[0]]))
    report = contamination_report(stage.config, stage.index.summary(), [stage.take_stats()])
    assert report["generic_ngrams"] == stage.index.generic_ngrams > 0 and report["whole_items"] == 1
    assert report["min_informative_words"] == 2 and report["max_items_per_ngram"] == 50
    assert report["benchmarks"]["b"]["documents"] == 1 and report["benchmarks"]["b"]["items_found"] == 1
    markdown = "\n".join(render_markdown(report))
    assert f"{stage.index.generic_ngrams:,} generic n-grams (fewer than 2 words" in markdown
    assert "1 items are matched whole" in markdown


@pytest.mark.skipif(
    not (SHARED_DATA / "benchmarks").exists() or not (SHARED_DATA / "python_docs").exists(),
    reason="../shared/data/benchmarks or python_docs absent",
)
def test_no_false_positives_on_the_python_docs(tmp_path):
    """4,660 sections of the Python documentation (numbered lists, tables, REPL sessions)
    against GSM8K, HumanEval and items that carry a counting run or the Fibonacci numbers:
    with every n-gram counting some sections match; with the defaults none."""
    from benchmarks.clean_text import python_docs_sections

    sections = python_docs_sections(SHARED_DATA)
    folder = SHARED_DATA / "benchmarks"
    gsm8k = [json.loads(line) for line in (folder / "gsm8k_test.jsonl").read_text().splitlines() if line.strip()]
    humaneval = [
        json.loads(line) for line in gzip.decompress((folder / "HumanEval.jsonl.gz").read_bytes()).splitlines()
    ]
    rng = random.Random(5)
    generic = [rng.choice([", ".join(map(str, range(rng.choice([0, 1]), 20))), FIBONACCI]) for _ in range(200)]
    items = [f"{r['question']} {run}\n{r['answer']}" for r, run in zip(gsm8k, generic)]
    items += [f"{r['prompt']}\n{r['canonical_solution']}" for r in humaneval]
    stage, every = _stage(tmp_path, items), _stage(tmp_path, items, min_informative_words=0)
    texts = pa.array(sections)
    flagged = sum(1 for found in stage.overlaps(stage.matches(texts)) if found)
    assert len(sections) > 4000 and flagged == 0
    assert sum(1 for found in every.overlaps(every.matches(texts)) if found) > 0
    # the items themselves, planted in sections, are all found
    planted = [f"{sections[i][:300]}\n{text}" for i, text in enumerate(items)]
    assert all(i in found for i, found in enumerate(_found(stage, planted)))
