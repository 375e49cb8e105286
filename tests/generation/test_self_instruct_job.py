"""Self-Instruct as a Refinery job against a real server (``transformers serve`` with the
small trained Llama of tests/helpers/tiny_llm.py): rounds of requests fanned out as Ray
tasks, records with provenance, through validation, dedup and the chat template into packed
SFT rows; resumed from the cache; refused before sending when over budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import JobSpecError, load_job_spec
from pipeline.core.progress import Progress
from pipeline.generation.rouge import rouge_l
from pipeline.phases.generate import GenerationBudgetError
from pipeline.phases.shard_tasks import ShardTaskError
from pipeline.runner import run_job
from tests.helpers import REPO
from tests.helpers.instruction_grammar import write_seed_tasks
from tests.helpers.llm_server import start_llm_server

CHAT = "POST /v1/chat/completions"

pytestmark = pytest.mark.usefixtures("ray_local")


def generation_spec(base_url: str, model: str, seeds: Path, out: Path, tokenizer: Path, **method) -> dict:
    return {
        "name": "self-instruct",
        "seed": 11,
        "output": {"uri": str(out)},
        "generate": {
            "backend": {"base_url": base_url, "model": model, "concurrency": 4, "backoff_s": 0.05},
            "sampling": {"temperature": 1.0, "max_tokens": 48},
            "method": "self_instruct",
            "self_instruct": {
                "seed_tasks": str(seeds),
                "target": 10,
                "max_rounds": 6,
                "requests_per_round": 4,
                **method,
            },
            "workers": 2,
        },
        "stages": {
            "tokenize": {"model": str(tokenizer), "chat": {"template": "chatml"}},
            "pack": {"seq_len": 256, "mode": "bestfit", "format": "parquet", "shard_tokens": 4000},
        },
    }


def _generated(out: Path) -> list[dict]:
    return [row for f in sorted((out / "generated").glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def test_self_instruct_rounds_to_packed_sft_rows(llm_server, chat_tokenizer, tmp_path):
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl")
    out = tmp_path / "out"
    spec = generation_spec(llm_server.base_url, llm_server.model, seeds, out, chat_tokenizer)
    spec["generate"]["backend"]["rate_limit"] = {"requests_per_s": 6}  # 3/s for each of the 2 workers
    report = run_job(spec, progress=Progress(quiet=True)).report

    generation = report["generation"]
    records = _generated(out)
    assert generation["records"] == len(records) == 10  # the model writes parseable answers
    # the limit holds over the job, steps included, up to one request per worker at the start
    sent = generation["requests"]
    assert sent["rate_limit_wait_s"] > 0 and sent["tokens_per_s"] > 0 and sent["cache_hits"] == 0
    assert sent["requests"] <= 6 * sent["seconds"] + 2 and sent["requests_per_s"] <= 6 * 1.2
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == len(records)
    # every candidate is a record or a named reject; every request is counted
    # (an answer with no task in it is a reject without being a candidate)
    no_task = generation["rejected"].get("no_task_in_output", 0)
    assert generation["candidates"] + no_task == len(records) + sum(generation["rejected"].values())
    assert set(generation["rejected"]) <= {
        "similar_to_pool", "over_target", "too_short", "too_long", "unusable_modality", "no_task_in_output",
        "empty_output", "no_output_field", "refused", "starts_with_punctuation", "starts_non_ascii",
    }  # fmt: skip
    assert generation["requests"]["failures"] == {} and generation["requests"]["sent"] >= 8
    assert len(generation["rounds"]) >= 2  # later rounds draw examples from earlier generations
    later = [r for r in records if r["generation"]["round"] > 1]
    assert any(p.startswith("self_instruct-") for r in later for p in r["generation"]["parents"])

    seed_texts = [json.loads(line)["instruction"] for line in seeds.read_text().splitlines()]
    instructions = [r["messages"][0]["content"].split("\n\n")[0] for r in records]
    for i, text in enumerate(instructions):  # the ROUGE-L filter held against seeds and each other
        assert max(rouge_l(text, s) for s in seed_texts + instructions[:i]) <= 0.7
    provenance = records[0]["generation"]
    assert provenance["method"] == "self_instruct" and provenance["generator"] == llm_server.model
    assert provenance["endpoint_kind"] == "openai" and provenance["seed"] == 11
    assert {t["template"] for t in provenance["templates"]} == {"self_instruct_tasks", "self_instruct_instance"}
    assert all(len(t["template_sha256"]) == 64 for t in provenance["templates"])
    assert json.loads(provenance["sampling"]) == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 48}
    assert all(r["generation"]["parents"] for r in records)
    assert {r["domain"] for r in records} == {"synthetic"}

    rows = []
    manifest = json.loads((out / "manifest.json").read_text())
    for shard in manifest["shards"]:
        rows += pq.read_table(out / shard["files"]["parquet"]["path"]).to_pylist()
    assert sum(len(r["seq_lengths"]) for r in rows) == report["totals"]["kept_docs"] > 0
    assert manifest["generation"]["records"] == len(records) and manifest["generation"]["method"] == "self_instruct"
    assert sum(r["records"] for r in manifest["generation"]["rounds"]) == len(records)
    backend = manifest["generation"]["backends"]["generator"]
    assert backend["model"] == llm_server.model and backend["requests"] == generation["requests"]["requests"]
    assert manifest["generation"]["prompt_tokens"] == backend["prompt_tokens"] > 0
    assert manifest["mixture"]["synthetic_domains"] == ["synthetic"] and manifest["mixture"]["synthetic_share"] == 1.0
    markdown = (out / "report.md").read_text()
    assert "## Generation" in markdown and "self_instruct with" in markdown


def test_a_rerun_resumes_from_the_cache_and_gives_the_same_records(llm_server, fault_proxy, chat_tokenizer, tmp_path):
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl")
    proxy = fault_proxy(llm_server.port, [])
    out = tmp_path / "out"
    spec = generation_spec(proxy.base_url, llm_server.model, seeds, out, chat_tokenizer)
    run_job(spec, progress=Progress(quiet=True))
    sent = proxy.state("forwarded")["POST /v1/chat/completions"]
    first = _generated(out)

    # as if killed after its requests were answered: markers and records gone, the cache kept
    for path in [*(out / "generated").glob("*.parquet"), *(out / "work" / "generate" / "_markers").glob("*.json")]:
        path.unlink()
    report = run_job(spec, progress=Progress(quiet=True)).report
    assert proxy.state("forwarded")["POST /v1/chat/completions"] == sent  # nothing sent again
    assert _generated(out) == first
    assert report["generation"]["requests"]["cache_hits"] == report["generation"]["requests"]["requests"]

    other = tmp_path / "other"  # a fresh output, same seed, deterministic server: the same records
    run_job(
        generation_spec(llm_server.base_url, llm_server.model, seeds, other, chat_tokenizer),
        progress=Progress(quiet=True),
    )
    assert _generated(other) == first


def test_a_server_killed_mid_round_fails_the_job_and_the_rerun_resends_nothing_answered(
    tiny_llm, llm_server, fault_proxy, chat_tokenizer, tmp_path
):
    """The server process is killed while a round's requests are in flight: the job stops with
    a message that says so (not a round of rejects); against a new server the re-run takes every
    answer the first server gave from the cache (counted at the server side by the proxies)."""
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl")
    out = tmp_path / "out"
    first = start_llm_server(tiny_llm, tmp_path / "first.log")
    try:
        proxy = fault_proxy(first.port, [])
        spec = generation_spec(proxy.base_url, first.model, seeds, out, chat_tokenizer)
        spec["generate"]["backend"].update(max_retries=2, concurrency=1)
        spec["generate"]["workers"] = 1

        def kill_after_three_answers():
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proxy.state("forwarded").get(CHAT, 0) < 3:
                time.sleep(0.05)
            first.process.kill()

        killer = threading.Thread(target=kill_after_three_answers)
        killer.start()
        with pytest.raises(ShardTaskError, match=r"stopped answering: no connection through 3 attempts") as err:
            run_job(spec, progress=Progress(quiet=True))
        killer.join()
        assert err.value.expected and "run the job again and it resumes" in str(err.value)
    finally:
        first.process.kill()
        first.process.wait(timeout=30)
    assert first.model == llm_server.model
    answered = proxy.state("forwarded")[CHAT]
    assert 3 <= answered < 8  # killed within the first round

    again = fault_proxy(llm_server.port, [])  # another server of the same model
    spec["generate"]["backend"]["base_url"] = again.base_url
    report = run_job(spec, progress=Progress(quiet=True)).report
    requests = report["generation"]["requests"]
    assert requests["cache_hits"] == answered  # every answer the first server gave, and none sent again
    assert again.state("forwarded")[CHAT] == requests["requests"] - answered
    assert report["generation"]["records"] == 10 and report["balance"]["ok"]


def test_over_budget_and_bad_seed_files_are_refused_before_sending(llm_server, fault_proxy, chat_tokenizer, tmp_path):
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl")
    proxy = fault_proxy(llm_server.port, [])  # counts what reaches the server
    spec = generation_spec(proxy.base_url, llm_server.model, seeds, tmp_path / "out", chat_tokenizer)
    spec["generate"]["max_requests"] = 20
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps(spec))
    dry = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(spec_file), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert dry.returncode == 1
    assert "sends at most 34 requests" in dry.stdout and "Nothing was sent" in dry.stdout
    assert "could send up to 34 requests" in dry.stderr and "max_requests (20)" in dry.stderr
    # the tokens: the first round's prompts at 4 characters a token, plus max_tokens, per request
    tokens = re.search(
        r"about ([\d,]+) prompt tokens and up to 48 completion tokens each: at most about ([\d,]+)", dry.stdout
    )
    per_prompt, total = (int(g.replace(",", "")) for g in tokens.groups())
    assert 50 < per_prompt < 1000 and abs(total - 34 * (per_prompt + 48)) <= 34
    assert not (tmp_path / "out").exists()
    validated = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "validate", str(spec_file)], capture_output=True, text=True, cwd=REPO
    )
    assert validated.returncode == 2 and "generate.max_requests: this job could send up to 34" in validated.stderr
    with pytest.raises(GenerationBudgetError, match="could send up to 34 requests"):  # a run without --dry-run
        run_job(spec, progress=Progress(quiet=True))
    assert CHAT not in proxy.state("forwarded")

    bad = tmp_path / "bad_seeds.jsonl"
    bad.write_text(seeds.read_text() + json.dumps({"id": "x", "instances": []}) + "\n")
    spec["generate"]["self_instruct"]["seed_tasks"] = str(bad)
    with pytest.raises(
        JobSpecError, match=r"generate.self_instruct.seed_tasks: .*bad_seeds.jsonl line 25: no 'instruction'"
    ):
        load_job_spec(spec)

    spec["generate"]["self_instruct"]["seed_tasks"] = str(seeds)
    template = tmp_path / "tasks.jinja"
    template.write_text("{{ examples }} {{ topic }}")
    spec["generate"]["self_instruct"]["tasks_template"] = str(template)
    with pytest.raises(
        JobSpecError, match="tasks_template: template tasks uses topic, which this method does not provide"
    ):
        load_job_spec(spec)


def test_an_unreachable_endpoint_fails_the_job_naming_it(chat_tokenizer, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    seeds = write_seed_tasks(tmp_path / "seeds.jsonl")
    spec = generation_spec(f"http://127.0.0.1:{port}/v1", "m", seeds, tmp_path / "out", chat_tokenizer)
    with pytest.raises(Exception, match=rf"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1"):
        run_job(spec, progress=Progress(quiet=True))
