"""Rejection sampling with a judge: score parsing on its own, and a job against the real
server (tests/helpers/llm_server.py) keeping the best-scored answer per prompt."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from pipeline.core.progress import Progress
from pipeline.generation.client import ChatResponse
from pipeline.generation.config import JudgeConfig
from pipeline.generation.judge import parse_score
from pipeline.runner import run_job
from tests.generation.test_self_instruct_job import _generated, generation_spec
from tests.helpers import REPO
from tests.helpers.instruction_grammar import write_seed_tasks

PATTERN = re.compile(JudgeConfig(prompts="x").score_pattern)


def test_scores_parse_from_the_judges_text_or_not_at_all():
    assert parse_score("Clear and correct. Score: 8", PATTERN, 1, 10) == 8.0
    assert parse_score("score=7.5", PATTERN, 1, 10) == 7.5
    assert parse_score("Score: [[9]]", PATTERN, 1, 10) == 9.0
    assert parse_score("Score: 3 at first, but on reflection Score: 6", PATTERN, 1, 10) == 6.0
    assert parse_score("Score: 42", PATTERN, 1, 10) is None  # out of range
    assert parse_score("A fine answer.", PATTERN, 1, 10) is None
    with pytest.raises(ValidationError, match="keep: above_min needs min_score"):
        JudgeConfig(prompts="x", keep="above_min")
    with pytest.raises(ValidationError, match="needs a group"):
        JudgeConfig(prompts="x", score_pattern="Score: \\d+")


@pytest.mark.usefixtures("ray_local")
def test_the_best_scored_candidate_of_each_prompt_is_kept(llm_server, chat_tokenizer, tmp_path):  # noqa: F811
    prompts = write_seed_tasks(tmp_path / "prompts.jsonl", n=6)
    out = tmp_path / "out"
    spec = generation_spec(llm_server.base_url, llm_server.model, prompts, out, chat_tokenizer)
    del spec["generate"]["self_instruct"]
    spec["generate"]["method"] = "judge"
    spec["generate"]["judge"] = {"prompts": str(prompts), "candidates": 3}
    report = run_job(spec, progress=Progress(quiet=True)).report

    generation = report["generation"]
    records = _generated(out)
    assert 0 < generation["records"] == len(records) <= 6
    assert generation["candidates"] == 18 == len(records) + sum(generation["rejected"].values())
    assert set(generation["rejected"]) <= {"judge_not_best", "judge_score_unparseable", "refused", "empty_output"}
    assert len({r["generation"]["parents"][0] for r in records}) == len(records)  # one per prompt
    assert all(1 <= r["generation"]["score"] <= 10 for r in records)
    assert {t["template"] for t in records[0]["generation"]["templates"]} == {"judge_score"}
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == len(records)
    assert all(r["generation"]["judge"] == llm_server.model for r in records)
    assert list(generation["backends"]) == ["generator"]  # one backend answers and judges


@pytest.mark.usefixtures("ray_local")
def test_a_judge_with_its_own_backend_gets_every_judgement(llm_server, fault_proxy, chat_tokenizer, tmp_path):  # noqa: F811
    """judge.backend: the judgements go to the judge's endpoint (a proxy in front of the same
    server counts them), the answers to the generator's; the report splits the figures."""
    prompts = write_seed_tasks(tmp_path / "prompts.jsonl", n=3)
    judge = fault_proxy(llm_server.port, [])
    spec = generation_spec(llm_server.base_url, llm_server.model, prompts, tmp_path / "out", chat_tokenizer)
    del spec["generate"]["self_instruct"]
    spec["generate"]["method"] = "judge"
    judge_backend = {"base_url": judge.base_url, "model": llm_server.model, "concurrency": 2}
    spec["generate"]["judge"] = {
        "prompts": str(prompts),
        "candidates": 2,
        "backend": judge_backend,
        "keep": "above_min",
        "min_score": 5,
    }
    spec["generate"]["dedup_on"] = "first_user_turn"  # one answer per prompt reaches the output
    report = run_job(spec, progress=Progress(quiet=True)).report

    backends = report["generation"]["backends"]
    assert set(backends) == {"generator", "judge"}
    assert backends["generator"]["requests"] == 6  # 3 prompts x 2 candidates
    judged = report["generation"]["candidates"] - sum(
        n for reason, n in report["generation"]["rejected"].items() if not reason.startswith("judge_")
    )
    assert backends["judge"]["requests"] == judged > 0
    forwarded = judge.state("forwarded")
    assert forwarded.get("POST /v1/chat/completions") == judged  # and not one answer request
    assert report["generation"]["requests"]["requests"] == 6 + judged
    assert "| judge |" in (tmp_path / "out" / "report.md").read_text()
    # keep: above_min: every answer scored 5 or more is a record, the others named rejects
    generation = report["generation"]
    records = _generated(tmp_path / "out")
    assert all(r["generation"]["score"] >= 5 for r in records)
    assert generation["candidates"] == 6 == len(records) + sum(generation["rejected"].values())
    assert set(generation["rejected"]) <= {
        "judge_score_below_min",
        "judge_score_unparseable",
        "refused",
        "empty_output",
    }
    assert "judge_not_best" not in generation["rejected"]
    prompts = {r["generation"]["parents"][0] for r in records}
    assert report["totals"]["kept_docs"] == len(prompts) and report["balance"]["ok"]


def _judge_method(prompts, **config):
    from pipeline.generation.judge import JudgedSampling

    return JudgedSampling(JudgeConfig(prompts=str(prompts), **config), {"temperature": 0.0, "max_tokens": 24}, 3, None)


def test_a_judge_that_writes_no_score_rejects_every_candidate_with_that_reason(llm_server, tmp_path):
    """A user's judge template the model answers without a score (here in the form of
    Evol-Instruct's equality check, answered Equal or Not Equal): each judged candidate is a
    ``judge_score_unparseable`` reject, none a record."""
    from pipeline.generation.client import OpenAIBackend
    from pipeline.generation.config import BackendConfig

    equal = (REPO / "pipeline" / "resources" / "generation" / "evol_instruct_equal.jinja").read_text()
    template = tmp_path / "compare.jinja"
    template.write_text(equal.replace("{{ first }}", "{{ instruction }}").replace("{{ second }}", "{{ response }}"))
    method = _judge_method(
        write_seed_tasks(tmp_path / "prompts.jsonl", n=3), candidates=2, judge_template=str(template)
    )
    backend = OpenAIBackend(BackendConfig(base_url=llm_server.base_url, model=llm_server.model))
    verdicts = []

    def send(requests, role="generator"):
        answers = backend.complete(requests)
        if role == "judge":
            verdicts.extend(a.text for a in answers)
        return answers

    result = method.round(1, send)
    assert result.candidates == 6 and result.records == []
    assert verdicts and all("Equal" in v for v in verdicts)
    assert result.rejected["judge_score_unparseable"] == len(verdicts)
    assert sum(result.rejected.values()) == 6


def test_a_round_with_nothing_left_to_judge_sends_nothing(tmp_path):
    """Every answer rejected before judging (or every evolution eliminated): the next step has
    no requests, and the sender returns none without starting a task."""
    from pipeline.config import load_job_spec
    from pipeline.phases.generate import Sender

    prompts = write_seed_tasks(tmp_path / "prompts.jsonl", n=2)
    spec = generation_spec("http://127.0.0.1:9/v1", "m", prompts, tmp_path / "out", tmp_path / "tokenizer.json")
    sender = Sender(load_job_spec(spec, check_files=False), 1, 2, Progress(quiet=True))
    assert sender([], role="judge") == [] and sender.calls == 0
    method = _judge_method(prompts, candidates=2)
    # every answer comes back empty: the judging step gets no requests, and goes to the sender
    empty = [ChatResponse(key="k", text="", prompt_tokens=1)]
    result = method.round(
        1, lambda requests, role="generator": empty * len(requests) if requests else sender(requests, role)
    )
    assert result.candidates == 4 and result.rejected == {"empty_output": 4} and result.records == []
