"""Chat jobs end to end: Alpaca, ShareGPT and OpenAI records (JSON lines, a JSON array,
gzip, Parquet) validated, deduplicated, scrubbed of PII inside messages and tool arguments,
rendered with ChatML, tokenized with loss masks and packed into SFT Parquet rows; every
record accounted for."""

import gzip
import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from pipeline import run_job
from pipeline.config import JobSpecError, load_job_spec
from pipeline.core.progress import Progress
from pipeline.tools.train_tokenizer import train_tokenizer
from tests.helpers import REPO
from tests.helpers.chat_data import openai_record, tool_record, write_chat_inputs

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def chat_tokenizer(sample_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chat-tok") / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=2000, tokenizer_format="tokenizer.json")
    return out


def chat_spec(input_uri, output_uri, tokenizer, **changes) -> dict:
    spec = {
        "name": "chat",
        "seed": 3,
        "input": {"uri": str(input_uri), "chat": {}},
        "output": {"uri": str(output_uri)},
        "stages": {
            "pii": {"enabled": True},
            "tokenize": {"model": str(tokenizer), "chat": {"template": "chatml"}},
            "pack": {"seq_len": 512, "mode": "bestfit", "format": "parquet", "shard_tokens": 4000},
        },
    }
    for section, values in changes.items():
        target = spec["stages"] if section in ("pii", "tokenize", "pack", "near_dedup", "exact_dedup") else spec
        target[section] = {**target.get(section, {}), **values}
    return spec


def _rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for shard in manifest["shards"]:
        rows += pq.read_table(out / shard["files"]["parquet"]["path"]).to_pylist()
    return rows


def _conversations(rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of every packed conversation, split by seq_lengths."""
    out = []
    for row in rows:
        start = 0
        for length in row["seq_lengths"]:
            out.append((row["input_ids"][start : start + length], row["labels"][start : start + length]))
            assert row["position_ids"][start : start + length] == list(range(length))
            start += length
        assert start == len(row["input_ids"]) <= 512
    return out


def test_chat_job_from_every_format_to_sft_rows(chat_tokenizer, tmp_path):
    counts = write_chat_inputs(tmp_path / "in")
    with (tmp_path / "in" / "openai.jsonl").open("a") as f:
        f.write(json.dumps(openai_record(0)) + "\n")  # an exact duplicate
        f.write(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}) + "\n")
        f.write(json.dumps({"messages": "not a list"}) + "\n")  # malformed: quarantined
        f.write(json.dumps(tool_record(7, email="alex.doe@example.com")) + "\n")
        record = openai_record(8)
        record["messages"][1]["content"] += " Reply to jamie.roe@example.org."
        f.write(json.dumps(record) + "\n")
    out = tmp_path / "out"
    result = run_job(chat_spec(tmp_path / "in", out, chat_tokenizer), progress=Progress(quiet=True))
    report = result.report
    total = sum(counts.values()) + 5
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == total
    assert report["rejected"]["validate"] == {"consecutive_user_turns": 1}
    assert report["rejected"]["exact_dedup"] == {"exact_duplicate": 1}
    assert report["quarantined"] == {"unknown_chat_format": 1}
    kept = total - 3
    assert report["totals"]["kept_docs"] == kept
    chat = report["chat"]
    assert chat["conversations"] == kept
    assert 0 < chat["output"]["trained_tokens"] < chat["output"]["tokens"] == report["totals"]["tokens"]
    assert chat["output"]["packing_efficiency"] > 0.5
    assert "## Conversations" in (out / "report.md").read_text()

    tokenizer = Tokenizer.from_file(str(chat_tokenizer))
    conversations = _conversations(_rows(out))
    assert len(conversations) == kept
    texts, trained = [], []
    for ids, labels in conversations:
        texts.append(tokenizer.decode(ids, skip_special_tokens=False))
        trained.append(tokenizer.decode([t for t in labels if t != -100], skip_special_tokens=False))
        assert all(label in (-100, token) for token, label in zip(ids, labels))
    # every conversation is whole, starts a turn and ends one; trained text is assistant turns only
    assert all(t.startswith("<|im_start|>") and t.endswith("<|im_end|>\n") for t in texts)
    assert all(t and "<|im_start|>" not in t for t in trained)
    by_id = {t.split("\n")[1]: (t, tr) for t, tr in zip(texts, trained) if "Question 1:" in t}
    (text, trained_text), *_ = by_id.values()
    assert trained_text == (
        "Answer 1. Here is a short explanation of the water cycle, step by step, with one example.<|im_end|>\n"
        "Fact 1: the water cycle has been studied for centuries.<|im_end|>\n"
    )
    # PII scrubbed inside a message and inside tool-call arguments, which stay JSON
    joined = "\n".join(texts)
    assert "example.com" not in joined and "example.org" not in joined
    call = next(t for t in texts if "request 7" in t)
    payload = call.split("<tool_call>\n")[1].split("\n</tool_call>")[0]
    assert json.loads(payload) == {"name": "get_weather", "arguments": {"city": "Hanoi", "notify": "<EMAIL_ADDRESS>"}}
    assert "Reply to <EMAIL_ADDRESS>." in joined
    # the manifest says how the rows were made
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "sft-parquet" and manifest["chat"]["template"] == "chatml"
    assert manifest["totals"]["trained_tokens"] + manifest["totals"]["masked_tokens"] == manifest["totals"]["tokens"]


def test_chat_job_is_deterministic_and_dedups_prompts_on_request(chat_tokenizer, tmp_path):
    write_chat_inputs(tmp_path / "in", n=6)
    with (tmp_path / "in" / "openai.jsonl").open("a") as f:
        twin = openai_record(2)
        twin["messages"][2]["content"] = "A different answer to the same question, in other words entirely."
        f.write(json.dumps(twin) + "\n")
    digests = []
    for run in ("a", "b"):
        result = run_job(chat_spec(tmp_path / "in", tmp_path / run, chat_tokenizer), progress=Progress(quiet=True))
        assert "exact_dedup" not in result.report["rejected"]
        manifest = json.loads((tmp_path / run / "manifest.json").read_text())
        digests.append([f["sha256"] for s in manifest["shards"] for f in s["files"].values()])
    assert digests[0] == digests[1]
    spec = chat_spec(tmp_path / "in", tmp_path / "first-turn", chat_tokenizer)
    spec["input"]["chat"] = {"dedup_on": "first_user_turn"}
    result = run_job(spec, progress=Progress(quiet=True))
    assert result.report["rejected"]["exact_dedup"] == {"exact_duplicate": 1}


def test_over_long_conversations_rejected_or_cut_at_a_turn(chat_tokenizer, tmp_path):
    long = openai_record(1)
    long["messages"][3]["content"] = "Tell me more. " + "More words about rivers and seas. " * 80
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "long.jsonl").write_text(json.dumps(long) + "\n" + json.dumps(openai_record(2)) + "\n")
    rejected = run_job(
        chat_spec(tmp_path / "in", tmp_path / "reject", chat_tokenizer, pack={"seq_len": 256}),
        progress=Progress(quiet=True),
    )
    assert rejected.report["rejected"]["chat_template"] == {"conversation_too_long": 1}
    spec = chat_spec(tmp_path / "in", tmp_path / "cut", chat_tokenizer, pack={"seq_len": 256})
    spec["stages"]["tokenize"]["chat"]["over_long"] = "truncate"
    cut = run_job(spec, progress=Progress(quiet=True))
    assert "chat_template" not in cut.report["rejected"] and cut.report["chat"]["truncated"] == 1
    tokenizer = Tokenizer.from_file(str(chat_tokenizer))
    texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids, _ in _conversations(_rows(tmp_path / "cut"))]
    truncated = next(t for t in texts if "Question 1:" in t)
    assert truncated.endswith("step by step, with one example.<|im_end|>\n") and "Tell me more" not in truncated


def test_template_that_raises_rejects_with_its_message(chat_tokenizer, tmp_path):
    template = tmp_path / "no_tools.jinja"
    template.write_text(
        "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('tool turns are not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    write_chat_inputs(tmp_path / "in", n=4)
    spec = chat_spec(tmp_path / "in", tmp_path / "out", chat_tokenizer, tokenize={"chat": {"template": str(template)}})
    report = run_job(spec, progress=Progress(quiet=True)).report
    assert report["balance"]["ok"]
    assert report["rejected"]["chat_template"] == {"template_error": 2}
    assert report["chat"]["template_errors"] == {"tool turns are not supported": 2}


def test_chat_bad_input_is_quarantined_with_file_and_record(chat_tokenizer, tmp_path):
    (tmp_path / "in").mkdir()
    good = json.dumps(openai_record(1)) + "\n"
    (tmp_path / "in" / "mixed.jsonl").write_bytes(
        good.encode() + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n' + b"not json\n"
    )
    huge = openai_record(2)
    huge["messages"][2]["content"] = "x" * (50 * 1024 * 1024)
    (tmp_path / "in" / "huge.jsonl").write_text(good + json.dumps(huge) + "\n")
    (tmp_path / "in" / "empty.jsonl").write_text("")
    spec = chat_spec(tmp_path / "in", tmp_path / "out", chat_tokenizer)
    report = run_job(spec, progress=Progress(quiet=True)).report
    assert report["balance"]["ok"]
    assert report["quarantined"] == {"invalid_utf8": 1, "invalid_json": 1, "document_too_large": 1}
    assert report["totals"]["kept_docs"] == 1  # the second good record is an exact duplicate
    (tmp_path / "in" / "notes.jsonl").write_text(json.dumps({"title": "a", "body": "b"}) + "\n")
    with pytest.raises(Exception, match=r"notes.jsonl.*not_chat_data.*line 1 .*none of the chat formats"):
        run_job(spec, progress=Progress(quiet=True))


def test_chat_spec_errors_name_the_key(chat_tokenizer, sample_corpus, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps(openai_record(0)) + "\n")
    base = chat_spec(tmp_path / "in", tmp_path / "out", chat_tokenizer)
    cases = [
        ({"stages": {"tokenize": {"model": str(chat_tokenizer)}}}, "stages.tokenize.chat: required"),
        ({"stages": {"pack": {"format": "megatron", "mode": "bestfit"}}}, "stages.pack.format: a chat job"),
        ({"stages": {"pack": {"format": "parquet", "mode": "concat"}}}, "stages.pack.mode: concat would cut"),
        ({"output": {"kind": "documents"}}, "output.documents.format: a chat job writes its conversations as JSON"),
        ({"input": {"chat": {"columns": {"id": "uid"}}}}, "set input.id_column: uid"),
        ({"input": {"chat": {"dedup_on": "prompt"}}}, "input.chat.dedup_on"),
    ]
    for change, message in cases:
        spec = json.loads(json.dumps(base))
        for section, values in change.items():
            if section == "stages":
                for name, value in values.items():
                    spec["stages"][name] = value if name == "tokenize" else {**spec["stages"][name], **value}
            else:
                spec[section] = {**spec[section], **values}
        with pytest.raises(JobSpecError, match=message):
            load_job_spec(spec)
    # a template that uses a filter Jinja does not have: named when the spec is validated
    shouting = tmp_path / "shout.jinja"
    shouting.write_text("{% for m in messages %}{{ m['content'] | shout }}{% endfor %}")
    spec = json.loads(json.dumps(base))
    spec["stages"]["tokenize"]["chat"]["template"] = str(shouting)
    with pytest.raises(
        JobSpecError, match=r"stages.tokenize.chat.template: .*does not compile: No filter named 'shout'"
    ):
        load_job_spec(spec)
    # a template whose special tokens the tokenizer lacks: named when the spec is validated
    sentencepiece = tmp_path / "sp.model"
    train_tokenizer(str(sample_corpus), str(sentencepiece), vocab_size=500)
    spec = json.loads(json.dumps(base))
    spec["stages"]["tokenize"]["model"] = str(sentencepiece)
    with pytest.raises(
        JobSpecError, match=r"stages.tokenize.chat.template: the template writes <\|im_start\|>, <\|im_end\|>"
    ):
        load_job_spec(spec)


def test_filtered_conversations_written_back_in_any_format(chat_tokenizer, tmp_path):
    """output.kind documents: the kept conversations (validated, deduplicated, scrubbed) as
    records of a chat format, with the input record's other fields (a generated record's
    provenance) after them; Alpaca refuses what it cannot hold, by name, and counts balance."""
    from pipeline.chat import detect_format, read_conversation

    counts = write_chat_inputs(tmp_path / "in", n=6)
    provenance = {"method": "self_instruct", "generator": "tiny-llm", "round": 2, "parents": ["seed-3"]}
    with (tmp_path / "in" / "openai.jsonl").open("a") as f:
        f.write(json.dumps(tool_record(9, email="sam.poe@example.com")) + "\n")
        f.write(json.dumps({**openai_record(40), "generation": provenance, "source": "forum"}) + "\n")
    total = sum(counts.values()) + 2
    results = {}
    for fmt in ("sharegpt", "alpaca"):
        spec = chat_spec(tmp_path / "in", tmp_path / fmt, chat_tokenizer)
        spec["output"] |= {"kind": "documents", "documents": {"format": "jsonl.gz", "chat_format": fmt}}
        report = run_job(spec, progress=Progress(quiet=True)).report
        assert report["balance"]["ok"] and report["totals"]["input_docs"] == total
        manifest = json.loads((tmp_path / fmt / "manifest.json").read_text())
        assert manifest["documents"] == {"format": "jsonl.gz", "chat_format": fmt}
        records = [
            json.loads(line)
            for shard in manifest["shards"]
            for line in gzip.decompress(
                (tmp_path / fmt / shard["files"]["documents"]["path"]).read_bytes()
            ).splitlines()
        ]
        assert len(records) == report["totals"]["kept_docs"]
        assert all(detect_format(r) == fmt and r["id"] for r in records)
        results[fmt] = (report, records)
    report, records = results["sharegpt"]
    assert "chat_format" not in report["rejected"] and len(records) == total
    generated = next(r for r in records if "Question 40:" in json.dumps(r))
    assert generated["generation"] == provenance and generated["source"] == "forum"
    assert list(generated)[:2] == ["id", "conversations"]  # the format's own fields first
    scrubbed = next(r for r in records if "request 9" in json.dumps(r))
    call = next(t for t in scrubbed["conversations"] if t["from"] == "function_call")
    assert json.loads(call["value"])["arguments"] == {"city": "Oslo", "notify": "<EMAIL_ADDRESS>"}
    report, records = results["alpaca"]
    # multi-turn OpenAI records keep their history as Alpaca's; tool conversations cannot be Alpaca
    assert report["rejected"]["chat_format"] == {"not_representable_as_alpaca": 4}
    assert all(read_conversation(r, "alpaca")["messages"][-1]["role"] == "assistant" for r in records)
    assert next(r for r in records if "Question 40:" in json.dumps(r))["generation"] == provenance


def test_json_array_and_parquet_records_keep_their_positions(chat_tokenizer, tmp_path):
    counts = write_chat_inputs(tmp_path / "in", n=5)
    spec = chat_spec(tmp_path / "in", tmp_path / "out", chat_tokenizer)
    spec["output"]["write_rejects"] = True
    spec["stages"]["pack"]["seq_len"] = 64  # most conversations are longer: rejected, with their rows
    report = run_job(spec, progress=Progress(quiet=True)).report
    assert report["balance"]["ok"] and report["totals"]["input_docs"] == sum(counts.values())
    rejects = pq.read_table(tmp_path / "out" / "rejects" / "tokenize").to_pylist()
    assert {r["reject_reason"] for r in rejects} == {"conversation_too_long"}
    alpaca_rows = sorted(r["row"] for r in rejects if r["shard_key"].startswith("alpaca"))
    assert alpaca_rows and all(0 <= row < 5 for row in alpaca_rows)


TRAINERS_PYTHON = REPO / "benchmarks" / ".venv-trainers" / "bin" / "python"


def test_sft_rows_load_in_datasets_and_train_with_trl(chat_tokenizer, tmp_path):
    """The trainers' own code, in their venv: `datasets` loads the shards, TRL's padding-free
    collator keeps every conversation's labels and boundaries, and SFTTrainer trains on them."""
    if not TRAINERS_PYTHON.exists():
        pytest.fail(f"{TRAINERS_PYTHON} is missing: `make test` builds it (benchmarks/requirements-trainers.txt)")
    write_chat_inputs(tmp_path / "in", n=8)
    out = tmp_path / "out"
    run_job(chat_spec(tmp_path / "in", out, chat_tokenizer), progress=Progress(quiet=True))
    manifest = json.loads((out / "manifest.json").read_text())
    files = [str(out / s["files"]["parquet"]["path"]) for s in manifest["shards"]]
    cases = {"files": files, "tokenizer": str(chat_tokenizer), "work": str(tmp_path), "rows": 2}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [
            str(TRAINERS_PYTHON),
            str(REPO / "benchmarks" / "trl_sft.py"),
            str(tmp_path / "cases.json"),
            str(tmp_path / "r.json"),
        ],
        check=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    theirs = json.loads((tmp_path / "r.json").read_text())
    rows = _rows(out)
    assert theirs["num_rows"] == len(rows)
    assert theirs["columns"] == ["input_ids", "labels", "assistant_masks", "position_ids", "seq_lengths"]
    first = rows[:2]
    batch = theirs["batch"]
    assert batch["input_ids"] == [t for r in first for t in r["input_ids"]]
    assert batch["labels"] == [t for r in first for t in r["labels"]]  # our masks, unchanged
    assert batch["position_ids"] == [p for r in first for p in r["position_ids"]]
    lengths = [n for r in first for n in r["seq_lengths"]]
    assert batch["cu_seq_lens"] == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    assert len(theirs["losses"]) == 2 and theirs["finite"] and all(loss > 0 for loss in theirs["losses"])
