"""Benchmark contamination: eval items found inside documents in every form (verbatim,
surface changes, fragments), none in clean text, the three actions, eval set reading errors, and
a job's report."""

import gzip
import json
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import columns as cols
from pipeline.stages.contamination import (
    CONTAMINATION,
    ContaminationCheck,
    ContaminationConfig,
    EvalSetError,
    build_index,
)
from pipeline.stages.contamination.index import ContaminationIndex
from tests.helpers import SHARED_DATA
from tests.helpers.documents import docs_table

TOPICS = ["river", "castle", "engine", "harvest", "library", "comet", "orchard", "harbour", "violin", "glacier"]


def _eval_items(n: int, seed: int = 0) -> list[dict]:
    """Generated word problems, distinct from each other and from the filler text."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randrange(2, 90), rng.randrange(2, 90)
        topic = rng.choice(TOPICS)
        items.append(
            {
                "question": f"Problem {i}: the {topic} keeper counts {a} lanterns on Monday and {b} lanterns on "
                f"Tuesday, then gives away a third of them to the {rng.choice(TOPICS)} guild. "
                f"How many lanterns does the keeper still hold at the end of week {i}?",
                "answer": f"The keeper holds {a}+{b}={a + b} lanterns, gives away {(a + b) // 3}, "
                f"so {a + b - (a + b) // 3} remain.\n#### {a + b - (a + b) // 3}",
            }
        )
    return items


FILLER = (
    "The committee met in the old hall to review the plans for the new bridge over the valley. "
    "Several members raised questions about the cost of the stone and the time the work would take. "
)


def _write_jsonl(path, rows, compress=False):
    data = "\n".join(json.dumps(r) for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def _stage(tmp_path, rows, **config) -> ContaminationCheck:
    uri = _write_jsonl(tmp_path / "eval.jsonl", rows)
    stage = ContaminationCheck(
        ContaminationConfig(enabled=True, benchmarks=[{"name": "lanterns", "uri": uri, "preset": "gsm8k"}], **config)
    )
    stage.setup()
    return stage


def _change_surface(text: str, rng: random.Random) -> str:
    """Case, whitespace and punctuation changed; the words stay."""
    words = re.findall(r"\w+", text)
    out = []
    for word in words:
        word = word.upper() if rng.random() < 0.3 else word.capitalize() if rng.random() < 0.3 else word
        out.append(word + rng.choice(["", ",", ";", " -", "...", "!"]))
    return rng.choice([" ", "  ", "\n", "\t "]).join(out)


def _fragment(text: str, share: float, rng: random.Random) -> str:
    words = text.split()
    length = max(1, int(len(words) * share))
    start = rng.randrange(len(words) - length + 1)
    return " ".join(words[start : start + length])


def _embed(piece: str, rng: random.Random, paragraphs: list[str]) -> str:
    before, after = rng.choice(paragraphs), rng.choice(paragraphs)
    return f"{before}\n{piece}\n{after}"


FORMS = {
    "verbatim": lambda text, rng: text,
    "surface": _change_surface,
    "fragment_60": lambda text, rng: _fragment(text, 0.6, rng),
}


def test_items_found_in_every_form_and_not_in_clean_text(tmp_path):
    items = _eval_items(200)
    stage = _stage(tmp_path, items)
    strict = _stage(tmp_path, items, min_item_fraction=0.5)
    rng = random.Random(1)
    paragraphs = [FILLER * rng.randint(1, 3) for _ in range(10)]
    for form, change in FORMS.items():
        texts = [_embed(change(f"{it['question']}\n{it['answer']}", rng), rng, paragraphs) for it in items]
        found = stage.matches(pa.array(texts))
        assert all(i in doc for i, doc in enumerate(found)), form
        if form == "fragment_60":
            continue
        # The items share template 13-grams ("... a third of them to the river guild"): a
        # document also matches its neighbours, by up to 48% of their n-grams. With half of
        # an item required, each whole item overlaps its own document and no other.
        assert sum(len(doc) > 1 for doc in found) > len(items) // 2, form
        assert [sorted(item for item, _, _ in overlap) for overlap in strict.overlaps(found)] == [
            [i] for i in range(len(items))
        ], form
    clean = [FILLER * 3, "Problem solving needs lanterns, keepers and a guild.", ""]
    assert stage.matches(pa.array(clean)) == [{}, {}, {}]


def test_thresholds_and_annotation(tmp_path):
    items = _eval_items(5)
    stage = _stage(tmp_path, items, min_item_fraction=0.5)
    whole = items[0]["question"] + " " + items[0]["answer"]
    words = whole.split()
    part = " ".join(words[: len(words) // 4])  # a quarter of the item: below the 50% threshold
    out = stage.process(docs_table([FILLER + whole, FILLER + part, FILLER]))
    annotations = out.table.column(CONTAMINATION).to_pylist()
    assert [a["item"] for a in annotations[0]] == ["0"] and annotations[0][0]["fraction"] == 1.0
    assert annotations[0][0]["benchmark"] == "lanterns" and annotations[0][0]["ngrams"] > 20
    assert annotations[1] == [] and annotations[2] == []
    assert out.reject_reasons is None  # annotate only


def test_drop_and_excise_with_margin_and_piece_limit(tmp_path):
    items = _eval_items(30)
    item_text = [f"{it['question']}\n{it['answer']}" for it in items]
    head, tail = "HEAD " * 100, " TAIL" * 100  # 500 characters each side
    doc_one = head + FILLER + item_text[0] + "\n" + FILLER + tail
    doc_many = FILLER.join([""] + item_text[:12] + [""])  # 12 separate regions: 13 pieces
    docs = docs_table([doc_one, doc_many, FILLER, item_text[3]])

    dropped = _stage(tmp_path, items, action="drop").process(docs)
    assert dropped.reject_reasons.to_pylist() == ["contaminated", "contaminated", None, "contaminated"]

    stage = _stage(tmp_path, items, action="excise", margin_chars=50)
    out = stage.process(docs)
    assert out.reject_reasons.to_pylist() == [None, "contaminated_too_many_pieces", None, "contaminated_entirely"]
    excised = out.table.column(cols.TEXT)[0].as_py()
    assert "lanterns" not in excised and excised.startswith("HEAD") and excised.endswith("TAIL")
    start = doc_one.index(item_text[0])
    # the cut reaches 50 characters beyond the matched words on each side, no further
    assert excised == doc_one[: start - 50] + "\n" + doc_one[start + len(item_text[0]) + 50 :]
    assert out.table.column(cols.TEXT_BYTES)[0].as_py() == len(excised.encode())
    stats = stage.take_stats()["lanterns"]
    assert stats["documents"] == 3 and stats["excised"] == 1 and stats["dropped"] == 2
    assert stats["examples"] == ["d0", "d1", "d3"]


def test_bitmap_never_drops_an_indexed_ngram(tmp_path):

    stage = _stage(tmp_path, _eval_items(300))
    from pipeline.core.bloom import in_bitmap

    hashes = stage.index.hashes
    assert len(hashes) > 10000 and in_bitmap(stage.bitmap, hashes).all()
    assert stage.bitmap.nbytes * 8 >= 32 * len(hashes)


def test_items_shorter_than_n_are_matched_whole(tmp_path):
    rows = [{"question": "What is the capital of Peru", "answer": "Lima"}] + _eval_items(3)
    stage = _stage(tmp_path, rows)
    found = stage.matches(
        pa.array(
            [
                "Quiz: what is the CAPITAL of Peru? Lima, of course.",
                "What is the capital of France? Paris.",
                "so what is the capital of peru lima",
            ]
        )
    )
    assert 0 in found[0] and 0 not in found[1] and 0 in found[2]
    assert stage.index.item_ngrams[0] == 1


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet", "csv"])
def test_eval_set_formats(tmp_path, fmt):
    rows = _eval_items(20)
    path = tmp_path / f"eval.{fmt}"
    if fmt == "jsonl.gz":
        _write_jsonl(path, rows, compress=True)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["question", "answer"])
            writer.writeheader()
            writer.writerows(rows)

    def index_of(uri):
        config = {"name": "lanterns", "uri": str(uri), "fields": ["question", "answer"]}
        return build_index(ContaminationConfig(enabled=True, benchmarks=[config]))

    index = index_of(path)
    reference = index_of(_write_jsonl(tmp_path / "reference.jsonl", rows))
    assert index.summary()["benchmarks"] == {"lanterns": 20} and len(index.hashes) > 20 * 30
    # The same items, n-grams and names as the same rows read from plain JSONL.
    for array in ContaminationIndex._ARRAYS:
        assert np.array_equal(getattr(index, array), getattr(reference, array)), array
    assert index.item_names == reference.item_names == [str(i) for i in range(20)]


def test_eval_set_errors_name_the_benchmark(tmp_path):
    good = _write_jsonl(tmp_path / "good.jsonl", _eval_items(3))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.jsonl").write_text('{"question": "a", "answer": "b"}\n{not json\n')
    (tmp_path / "empty.jsonl").write_text("")
    cases = {
        "missing_field": ({"uri": good, "fields": ["question", "solution"]}, "missing field(s) solution"),
        "absent_file": ({"uri": str(tmp_path / "nope.jsonl"), "preset": "gsm8k"}, "cannot read the file"),
        "empty_file": ({"uri": str(tmp_path / "empty.jsonl"), "preset": "gsm8k"}, "holds no items"),
        "bad_json": ({"uri": str(tmp_path / "broken.jsonl"), "preset": "gsm8k"}, "not readable as jsonl"),
        "unknown_format": ({"uri": str(tmp_path / "notes.txt"), "preset": "gsm8k"}, "unknown format"),
    }
    for name, (entry, message) in cases.items():
        config = ContaminationConfig(enabled=True, benchmarks=[{"name": name, **entry}])
        with pytest.raises(EvalSetError, match=f"benchmark '{name}'.*{re.escape(message)}"):
            build_index(config)
    with pytest.raises(ValueError, match="name its text fields or a preset"):
        ContaminationConfig(enabled=True, benchmarks=[{"name": "x", "uri": good}])
    with pytest.raises(ValueError, match="Extra inputs"):
        ContaminationConfig(enabled=True, benchmarks=[{"name": "x", "uri": good, "preset": "gsm8k", "feilds": []}])


def test_job_drops_contaminated_documents_and_reports_them(make_job, sample_corpus, tmp_path):
    from pipeline import run_job

    table = pq.read_table(sample_corpus)
    texts = [t for t in table.column("text").to_pylist() if t and len(t.split()) > 80]
    rows = [{"question": " ".join(t.split()[10:60]), "answer": ""} for t in texts[:4]]
    eval_uri = _write_jsonl(tmp_path / "eval.jsonl", rows)
    out = tmp_path / "out"
    result = run_job(
        make_job(
            sample_corpus,
            out,
            stages={
                "contamination": {
                    "enabled": True,
                    "action": "drop",
                    "benchmarks": [{"name": "planted", "uri": eval_uri, "preset": "gsm8k"}],
                }
            },
        )
    )
    report = result.report
    assert report["balance"]["ok"]
    entry = report["contamination"]["benchmarks"]["planted"]
    assert entry["items"] == 4 and entry["items_found"] == 4
    assert entry["documents"] >= 4 and entry["dropped"] == entry["documents"]
    assert report["rejected"]["contamination"]["contaminated"] == entry["documents"]
    saved = json.loads((out / "contamination.json").read_text())
    assert saved == report["contamination"]
    markdown = (out / "report.md").read_text()
    assert "## Benchmark contamination" in markdown and "| planted | 4 | 4 |" in markdown
    for row in rows:  # ids only, never the text
        assert row["question"][:40] not in json.dumps(saved) and row["question"][:40] not in markdown


@pytest.mark.skipif(
    not (SHARED_DATA / "benchmarks").exists() or not (SHARED_DATA / "wikitext2").exists(),
    reason="../shared/data/benchmarks or wikitext2 absent",
)
def test_gsm8k_and_humaneval_recall_and_false_positives_on_wikipedia():
    config = ContaminationConfig(
        enabled=True,
        benchmarks=[
            {"name": "gsm8k", "uri": str(SHARED_DATA / "benchmarks" / "gsm8k_test.jsonl"), "preset": "gsm8k"},
            {"name": "humaneval", "uri": str(SHARED_DATA / "benchmarks" / "HumanEval.jsonl.gz"), "preset": "humaneval"},
        ],
    )
    stage = ContaminationCheck(config)
    stage.setup()
    items = [json.loads(line) for line in (SHARED_DATA / "benchmarks" / "gsm8k_test.jsonl").read_text().splitlines()]
    items_text = [f"{r['question']}\n{r['answer']}" for r in items]
    humaneval = [
        json.loads(line)
        for line in gzip.decompress((SHARED_DATA / "benchmarks" / "HumanEval.jsonl.gz").read_bytes())
        .decode()
        .splitlines()
    ]
    items_text += [r["prompt"] + r["canonical_solution"] for r in humaneval]
    paragraphs = [
        line.strip()
        for name in ("valid.txt", "test.txt")
        for line in (SHARED_DATA / "wikitext2" / name).read_text().splitlines()
        if len(line.strip()) > 300 and not line.strip().startswith("=")
    ]
    rng = random.Random(7)
    for form, change in FORMS.items():
        texts = [_embed(change(text, rng), rng, paragraphs) for text in items_text]
        found = stage.matches(pa.array(texts))
        recall = sum(1 for i, doc in enumerate(found) if i in doc) / len(items_text)
        assert recall >= 0.99, (form, recall)
    clean = stage.overlaps(stage.matches(pa.array(paragraphs)))
    assert len(paragraphs) > 2000
    assert sum(1 for doc in clean if doc) / len(paragraphs) <= 0.001


def test_eval_set_read_from_s3(s3, s3_endpoint, tmp_path):
    items = _eval_items(10)
    s3.mkdir("evals")
    s3.put(_write_jsonl(tmp_path / "eval.jsonl.gz", items, compress=True), "evals/lanterns.jsonl.gz")
    stage = ContaminationCheck(
        ContaminationConfig(
            enabled=True,
            benchmarks=[
                {
                    "name": "lanterns",
                    "uri": "s3://evals/lanterns.jsonl.gz",
                    "preset": "gsm8k",
                    "storage_options": {"endpoint_url": s3_endpoint},
                }
            ],
        )
    )
    stage.setup()
    found = stage.matches(pa.array([FILLER + items[4]["question"], FILLER]))
    assert 4 in found[0] and found[1] == {}
    missing = ContaminationConfig(
        enabled=True,
        benchmarks=[
            {
                "name": "gone",
                "uri": "s3://evals/nope.jsonl",
                "preset": "gsm8k",
                "storage_options": {"endpoint_url": s3_endpoint},
            }
        ],
    )
    with pytest.raises(EvalSetError, match="benchmark 'gone'.*cannot read the file"):
        build_index(missing)


def _spec_with_eval_sets(make_job, corpus, tmp_path, benchmarks: list[dict]) -> dict:
    return make_job(corpus, tmp_path / "out", stages={"contamination": {"enabled": True, "benchmarks": benchmarks}})


def test_spec_names_a_missing_eval_file_by_key(make_job, sample_corpus, tmp_path):
    from pipeline.config import JobSpecError, load_job_spec

    spec = _spec_with_eval_sets(
        make_job, sample_corpus, tmp_path, [{"name": "gsm8k", "uri": str(tmp_path / "absent.jsonl"), "preset": "gsm8k"}]
    )
    with pytest.raises(JobSpecError, match=r"stages.contamination.benchmarks.0.uri \('gsm8k'\): file not found"):
        load_job_spec(spec)
    spec["stages"]["contamination"]["benchmarks"][0]["preset"] = "gsm9k"
    with pytest.raises(JobSpecError, match="preset"):
        load_job_spec(spec)


def test_spec_rejects_an_eval_file_without_its_presets_fields(make_job, sample_corpus, tmp_path):
    """``preset: arc`` on a file whose items have ``query``/``choices`` fails when the spec is
    loaded, naming the key, the missing field and the fields the file has; so does a file
    that is not JSON. Mutation that fails it: check_files checks existence only."""
    from pipeline.config import JobSpecError, load_job_spec

    eval_file = tmp_path / "arc.jsonl"
    eval_file.write_text(json.dumps({"query": "Which gas do plants take in?", "choices": ["CO2", "O2"]}) + "\n")
    not_json = tmp_path / "notes.jsonl"
    not_json.write_text("these are notes, not items\n")
    spec = _spec_with_eval_sets(
        make_job,
        sample_corpus,
        tmp_path,
        [
            {"name": "arc", "uri": str(eval_file), "preset": "arc"},
            {"name": "notes", "uri": str(not_json), "fields": ["text"]},
        ],
    )
    with pytest.raises(JobSpecError) as error:
        load_job_spec(spec)
    message = str(error.value)
    assert "stages.contamination.benchmarks.0.uri ('arc'): " in message
    assert "missing field(s) question; it has query, choices" in message
    assert "stages.contamination.benchmarks.1.uri ('notes'): " in message and "not readable as jsonl" in message
    spec["stages"]["contamination"]["benchmarks"] = [{"name": "arc", "uri": str(eval_file), "fields": ["query"]}]
    load_job_spec(spec)


def test_conversations_are_matched_message_by_message(tmp_path):
    """A text of several fields (a chat job's messages, joined by cols.SEGMENT_BREAK) is
    matched field by field: an item inside one message is found, the same words split across
    two messages are not, and each document's counts stay its own."""
    question = "Which planet of our solar system turns so slowly that its day lasts longer than its year"
    stage = _stage(tmp_path, [{"question": question, "answer": "Venus"}] + _eval_items(1, seed=5))
    words = question.split()
    half = len(words) // 2
    inside = cols.SEGMENT_BREAK.join(["Can you answer this?", question, "Venus."])
    across = cols.SEGMENT_BREAK.join([" ".join(words[:half]), " ".join(words[half:])])
    found = stage.matches(pa.array([inside, across, FILLER, "Hello" + cols.SEGMENT_BREAK + "there"]))
    assert 0 in found[0] and found[1] == {} and found[2] == {} and found[3] == {}
    joined = stage.matches(pa.array([" ".join(words[:half]) + "\n" + " ".join(words[half:])]))
    assert 0 in joined[0]  # the same words in one field do match
