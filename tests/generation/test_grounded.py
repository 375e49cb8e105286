"""Document-grounded generation: the answer parsing on its own, and jobs against the real
server (tests/helpers/llm_server.py): rewrites of a corpus's documents into the pretraining
path beside their sources (the real-data floor holds); question-answer pairs about documents
through the chat path to packed SFT rows; and answers that hold no such pairs, each a named
reject."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.config import JobSpecError, load_job_spec
from pipeline.core.progress import Progress
from pipeline.generation.config import DocumentsConfig
from pipeline.generation.grounded import cut, qa_pairs
from pipeline.runner import run_job
from tests.generation.test_self_instruct_job import _generated
from tests.helpers import REPO
from tests.helpers.instruction_grammar import QA_MAX_CHARS


def test_question_answer_pairs_parse_in_their_common_forms():
    text = (
        "Here are some pairs.\n\nQuestion: What is the capital of Norway?\nAnswer: Oslo is the capital.\n\n"
        "Q2: How cold does it get?\nA2: It can fall below -20 degrees\nin winter.\n"
        "**Question 3:** Is it by the sea?\n**Answer 3:** Yes, on a fjord.\n"
        "Question: A question left without an answer?\n"
    )
    assert qa_pairs(text) == [
        ("What is the capital of Norway?", "Oslo is the capital."),
        ("How cold does it get?", "It can fall below -20 degrees\nin winter."),
        ("Is it by the sea?", "Yes, on a fjord."),
    ]
    assert qa_pairs("Oslo is the capital of Norway.") == []
    assert cut("one two three four", 100) == "one two three four"
    assert cut("alpha beta gamma delta", 13) == "alpha beta"
    with pytest.raises(ValidationError, match="keep_source: only for produce: documents"):
        DocumentsConfig(source="x", produce="conversations", keep_source=True)


def _spec(base_url: str, model: str, corpus, out, tokenizer, **documents) -> dict:
    return {
        "name": "rephrase",
        "seed": 5,
        "output": {"uri": str(out)},
        "generate": {
            "backend": {"base_url": base_url, "model": model, "concurrency": 4, "backoff_s": 0.05},
            "sampling": {"temperature": 0.8, "max_tokens": 48},
            "method": "documents",
            "documents": {"source": str(corpus), "max_documents": 12, "min_words": 3, **documents},
            "workers": 2,
        },
        "stages": {
            "tokenize": {"model": str(tokenizer)},
            "pack": {"seq_len": 128, "mode": "concat", "format": "megatron", "shard_tokens": 20000},
        },
    }


@pytest.mark.usefixtures("ray_local")
def test_rewrites_go_into_the_pretraining_mix_beside_their_sources(
    llm_server, sample_corpus, tokenizer_model, tmp_path
):
    out = tmp_path / "out"
    spec = _spec(llm_server.base_url, llm_server.model, sample_corpus, out, tokenizer_model)
    loaded = load_job_spec(spec)
    assert loaded.input.chat is None and loaded.input.text_column == "text"  # a document job
    report = run_job(spec, progress=Progress(quiet=True)).report

    records = _generated(out)
    sources = [r for r in records if r["generation"] is None]
    rewrites = [r for r in records if r["generation"] is not None]
    rows = [r for f in sorted(sample_corpus.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    first_ids = [r["id"] for r in rows if r["text"] and r["text"].strip()][:12]
    assert [r["id"] for r in sources] == first_ids and {r["domain"] for r in sources} == {"real"}
    assert rewrites and all(r["text"] for r in rewrites) and {r["domain"] for r in rewrites} == {"synthetic"}
    for r in rewrites:  # each rewrite names its source and how it was made
        assert r["id"] == f"documents-{r['generation']['parents'][0]}" and r["generation"]["parents"][0] in first_ids
        assert r["generation"]["method"] == "documents" and r["generation"]["generator"] == llm_server.model
        assert [t["template"] for t in r["generation"]["templates"]] == ["documents_rephrase_wikipedia"]
    generation = report["generation"]
    assert generation["candidates"] == 12 == len(rewrites) + sum(generation["rejected"].values())
    assert generation["records"] == len(rewrites) and generation["source_records"] == len(sources) == 12
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == len(records)
    manifest = json.loads((out / "manifest.json").read_text())
    mixture = manifest["mixture"]
    assert mixture["synthetic_domains"] == ["synthetic"]
    assert mixture["real_share"] >= 0.2 and abs(mixture["real_share"] + mixture["synthetic_share"] - 1) < 1e-9
    assert manifest["shards"] and report["totals"]["tokens"] > 0
    # the report sets the rewrites beside their sources
    sides = report["mixture"]["synthetic_vs_real"]["sides"]
    assert sides["synthetic"]["domains"] == ["synthetic"] and sides["real"]["domains"] == ["real"]
    assert sides["real"]["documents"] + sum(sides["real"]["duplicates_removed"].values()) == len(sources)
    reached = sides["synthetic"]["documents"] + sum(sides["synthetic"]["duplicates_removed"].values())
    assert 0 < reached <= len(rewrites)
    # every rewrite dedup removed duplicates a document whose side the report names
    of = sides["synthetic"]["duplicates_of"]
    assert "unlocated" not in of
    assert sum(n for side in of.values() for n in side["removed"].values()) == sum(
        sides["synthetic"]["duplicates_removed"].values()
    )
    assert "### Synthetic against real data" in (out / "report.md").read_text()


@pytest.mark.usefixtures("ray_local")
def test_question_answer_pairs_about_documents_become_packed_sft_rows(
    llm_server, sample_corpus, chat_tokenizer, tmp_path
):
    out = tmp_path / "out"
    spec = _spec(llm_server.base_url, llm_server.model, sample_corpus, out, chat_tokenizer)
    spec["generate"]["sampling"] = {"temperature": 0.0, "max_tokens": 64}
    spec["generate"]["documents"].update(
        template="builtin:documents_qa_pairs", produce="conversations", max_chars=QA_MAX_CHARS
    )
    spec["generate"]["documents"].pop("min_words")
    # the generated conversations go through the same stages as any chat data: an eval set
    # holding one of the model's answers (contamination drops what overlaps it), and PII
    evals = tmp_path / "probe.jsonl"
    evals.write_text(json.dumps({"question": "It shows an example."}) + "\n")
    spec["stages"] = {
        "contamination": {
            "enabled": True,
            "action": "drop",
            "benchmarks": [{"name": "probe", "uri": str(evals), "fields": ["question"]}],
        },
        "pii": {"enabled": True},
        "tokenize": {"model": str(chat_tokenizer), "chat": {"template": "chatml"}},
        "pack": {"seq_len": 256, "mode": "bestfit", "format": "parquet", "shard_tokens": 4000},
    }
    assert load_job_spec(spec).input.chat is not None  # a chat job
    report = run_job(spec, progress=Progress(quiet=True)).report

    records = _generated(out)
    generation = report["generation"]
    rows = [r for f in sorted(sample_corpus.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    first_ids = [r["id"] for r in rows if r["text"] and r["text"].strip()][:12]
    answered = {r["generation"]["parents"][0] for r in records}
    # most documents get pairs; each answer is records or one named reject
    assert len(answered) >= 8 and answered <= set(first_ids)
    assert generation["candidates"] == 12 == len(answered) + sum(generation["rejected"].values())
    assert set(generation["rejected"]) <= {"no_qa_pairs", "refused", "empty_output"}
    assert generation["records"] == len(records) >= len(answered)
    for r in records:
        question, answer = r["messages"]
        assert question["role"] == "user" and question["content"].endswith("?") and "Answer:" not in question["content"]
        assert answer["role"] == "assistant" and answer["content"] and "Question:" not in answer["content"]
        parent = r["generation"]["parents"][0]
        assert r["id"].startswith(f"documents-{parent}-q") and r["domain"] == "synthetic"
        assert [t["template"] for t in r["generation"]["templates"]] == ["documents_qa_pairs"]
    # the pairs went through the chat path: every kept conversation is a packed sequence
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == len(records)
    overlapping = [r for r in records if "It shows an example." in r["messages"][1]["content"]]
    assert 0 < len(overlapping) < len(records)
    assert sum(report["rejected"]["contamination"].values()) == len(overlapping)
    assert {"contamination", "pii"} <= {step["step"] for step in report["annotate_steps"]}
    manifest = json.loads((out / "manifest.json").read_text())
    packed = [row for s in manifest["shards"] for row in pq.read_table(out / s["files"]["parquet"]["path"]).to_pylist()]
    assert sum(len(row["seq_lengths"]) for row in packed) == report["totals"]["kept_docs"] > 0
    assert manifest["generation"]["records"] == len(records)


@pytest.mark.usefixtures("ray_local")
def test_answers_without_question_answer_pairs_are_named_rejects(llm_server, sample_corpus, tmp_path):
    """A conversations job whose template asks for something else (here a user's template in the
    judge's form, answered ``Score: N``): every answer is a ``no_qa_pairs`` reject (or another
    named one), none a record."""
    from pipeline.generation.client import OpenAIBackend
    from pipeline.generation.config import BackendConfig
    from pipeline.generation.grounded import GroundedGeneration

    judge = (REPO / "pipeline" / "resources" / "generation" / "judge_score.jinja").read_text()
    template = tmp_path / "rate_document.jinja"
    template.write_text(
        judge.replace("{{ instruction }}", "Write a short story about rivers.").replace(
            "{{ response }}", "{{ document }}"
        )
    )
    config = DocumentsConfig(
        source=str(sample_corpus), max_documents=6, template=str(template), produce="conversations"
    )
    method = GroundedGeneration(config, {"temperature": 0.0, "max_tokens": 32}, 1, None)
    backend = OpenAIBackend(BackendConfig(base_url=llm_server.base_url, model=llm_server.model))
    result = method.round(1, backend.complete)
    assert result.candidates == 6 and result.records == []
    assert sum(result.rejected.values()) == 6 and set(result.rejected) <= {"no_qa_pairs", "refused", "empty_output"}

    spec = _spec(llm_server.base_url, llm_server.model, sample_corpus, tmp_path / "out", "x.json")
    spec["generate"]["documents"]["source"] = str(tmp_path / "missing")
    with pytest.raises(JobSpecError, match="generate.documents.source: "):
        load_job_spec(spec)
