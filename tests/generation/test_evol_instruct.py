"""Evol-Instruct: the paper's elimination rules on their own, and whole rounds as a job
against the real server (tests/helpers/llm_server.py), through the chat path."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.core.progress import Progress
from pipeline.generation.config import EVOLUTIONS
from pipeline.generation.evol_instruct import copies_template, judged_equal, response_problem
from pipeline.runner import run_job
from tests.generation.test_self_instruct_job import _generated, generation_spec
from tests.helpers.instruction_grammar import write_seed_tasks

REASONS = {
    "no_information_gain", "copies_template_wording", "empty_output", "refused", "only_stop_words",
    "unparseable_judgement",
}  # fmt: skip


def test_the_papers_elimination_rules():
    assert copies_template("#Rewritten Prompt#: Write a poem about rivers.")
    assert copies_template("Rewrite the given prompt so that it asks for two poems.")
    assert not copies_template("Write a poem about rivers in two stanzas.")
    assert judged_equal("Not Equal") is False and judged_equal("equal.") is True and judged_equal("Maybe") is None
    assert response_problem("I'm sorry, but I cannot write that.") == "refused"
    assert (
        response_problem("Sorry " + "word " * 90) is None
    )  # long answers that apologise are kept (the paper: < 80 words)
    assert response_problem(" , . ; the of and ") == "only_stop_words"
    assert response_problem("  ") == "empty_output"
    assert response_problem("Rivers carry water to the sea.") is None


@pytest.mark.usefixtures("ray_local")
def test_evol_instruct_rounds_evolve_the_pool(llm_server, chat_tokenizer, tmp_path):  # noqa: F811
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl", n=8)
    out = tmp_path / "out"
    spec = generation_spec(llm_server.base_url, llm_server.model, seeds, out, chat_tokenizer)
    del spec["generate"]["self_instruct"]
    spec["generate"]["method"] = "evol_instruct"
    spec["generate"]["evol_instruct"] = {"seed_instructions": str(seeds), "rounds": 2}
    report = run_job(spec, progress=Progress(quiet=True)).report

    generation = report["generation"]
    records = _generated(out)
    assert generation["records"] == len(records) > 0
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == len(records)
    assert set(generation["rejected"]) <= REASONS
    # every evolution is a record or a named reject: 8 instructions, 2 rounds
    assert generation["candidates"] == 16 == len(records) + sum(generation["rejected"].values())
    seed_ids = {json.loads(line)["id"] for line in seeds.read_text().splitlines()}
    first = {r["id"]: r for r in records if r["generation"]["round"] == 1}
    second = [r for r in records if r["generation"]["round"] == 2]
    assert first and second
    for record in first.values():
        assert record["generation"]["parents"][0] in seed_ids
        assert record["messages"][0]["role"] == "user" and record["messages"][1]["role"] == "assistant"
    # round 2 evolves round 1's survivors (and the originals of failed evolutions)
    assert {r["generation"]["parents"][0] for r in second} <= seed_ids | set(first)
    assert any(r["generation"]["parents"][0] in first for r in second)
    # each record names the evolution that made it, drawn from every operation over the rounds
    operations = {r["generation"]["operation"] for r in records}
    assert operations <= set(EVOLUTIONS) and len(operations) >= 3
    templates = {t["template"] for t in records[0]["generation"]["templates"]}
    assert templates == {"evol_instruct_depth", "evol_instruct_breadth", "evol_instruct_equal"}
    # the equality judge asked once per surviving evolution, the answer once per kept one
    assert generation["requests"]["requests"] >= 16 + len(records)
    # through the chat path: every kept conversation is a packed SFT sequence
    manifest = json.loads((out / "manifest.json").read_text())
    packed = [row for s in manifest["shards"] for row in pq.read_table(out / s["files"]["parquet"]["path"]).to_pylist()]
    assert sum(len(row["seq_lengths"]) for row in packed) == report["totals"]["kept_docs"] > 0
    assert all(sum(row["assistant_masks"]) > 0 for row in packed)  # the answers are trained on


def test_operations_limit_the_evolutions_drawn(llm_server, tmp_path):
    """``operations: [breadth]``: every evolution prompt is the in-breadth template's, and every
    record says so; with all six, each of the paper's five in-depth evolutions and in-breadth
    is drawn for a pool of 24 and rendered into its prompt."""
    from pipeline.generation.client import OpenAIBackend
    from pipeline.generation.config import BackendConfig, EvolInstructConfig
    from pipeline.generation.evol_instruct import DEPTH_METHODS, EvolInstruct

    backend = OpenAIBackend(BackendConfig(base_url=llm_server.base_url, model=llm_server.model, concurrency=4))
    sent = []

    def send(requests):
        sent.extend(requests)
        return backend.complete(requests)

    sampling = {"temperature": 0.0, "max_tokens": 24}
    seeds = str(write_seed_tasks(tmp_path / "seeds.jsonl", n=8))
    breadth = EvolInstruct(EvolInstructConfig(seed_instructions=seeds, operations=["breadth"]), sampling, 1, None)
    result = breadth.round(1, send)
    evolutions = [r for r in sent if r.context["step"] not in ("equal", "answer")]
    assert len(evolutions) == 8 and {r.context["step"] for r in evolutions} == {"breadth"}
    assert all(r.context["template"] == "evol_instruct_breadth" for r in evolutions)
    assert result.records and {r["operation"] for r in result.records} == {"breadth"}

    class Drawn(Exception):
        pass

    def keep_and_stop(requests):  # the evolution requests are what is checked: none is sent
        sent.extend(requests)
        raise Drawn

    seeds = str(write_seed_tasks(tmp_path / "more_seeds.jsonl", n=24))
    every = EvolInstruct(EvolInstructConfig(seed_instructions=seeds), sampling, 1, None)
    assert {r.context["step"] for r in every.first_requests()} == {"deepen"}
    sent.clear()
    with pytest.raises(Drawn):
        every.round(1, keep_and_stop)
    drawn = {r.context["step"]: r.messages[0]["content"] for r in sent}
    assert len(sent) == 24 and set(drawn) == set(EVOLUTIONS)
    for operation, instruction in DEPTH_METHODS.items():
        assert instruction in drawn[operation]
