"""``refinery convert-chat``: every input format and file kind in, the target format out,
every record written or rejected with its reason, and clear errors for files that are not
chat data."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.tools.convert_chat import ChatInputError, convert_chat

ALPACA = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(5)]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]},  # empty_content
    {
        "conversations": [
            {"from": "human", "value": "Sum 2 and 3"},
            {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 2, "b": 3}}'},
            {"from": "observation", "value": "5"},
            {"from": "gpt", "value": "5"},
        ],
        "tools": '[{"name": "add", "parameters": {}}]',
    },
]
OPENAI = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}]  # two users, no assistant


@pytest.fixture
def mixed(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.json").write_text(json.dumps(ALPACA))
    with gzip.open(root / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in SHAREGPT)
    pq.write_table(pa.Table.from_pylist([{"messages": json.dumps(OPENAI[0]["messages"])}]), root / "c.parquet")
    (root / "d.jsonl").write_text(json.dumps(OPENAI[0]) + "\n")
    return root


def test_every_record_is_written_or_rejected_with_its_reason(mixed, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["convert-chat", str(mixed / "a.json"), str(out), "--to", "openai"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in written] == [f"Say {i}." for i in range(5)]
    assert "read 5 records; wrote 5 as openai" in capsys.readouterr().out

    counts = convert_chat(str(mixed / "b.jsonl.gz"), str(tmp_path / "s.jsonl"), "alpaca")
    assert counts.read == 3 and counts.written == 1 and counts.balanced()
    assert dict(counts.rejected) == {"empty_content": 1, "not_representable_as_alpaca": 1}
    rejects = [json.loads(line) for line in (tmp_path / "s.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["source"].rsplit("#", 1)[1], r["reason"]) for r in rejects] == [
        ("1", "empty_content"),
        ("2", "not_representable_as_alpaca"),
    ]


def test_openai_to_sharegpt_keeps_tool_calls_and_rules_apply(mixed, tmp_path):
    counts = convert_chat(str(mixed / "b.jsonl.gz"), str(tmp_path / "o.jsonl.gz"), "openai")
    records = [json.loads(line) for line in gzip.decompress((tmp_path / "o.jsonl.gz").read_bytes()).splitlines()]
    calls = records[1]["messages"][1]["tool_calls"]
    assert calls == [{"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]
    assert records[1]["messages"][2] == {"role": "tool", "content": "5", "tool_call_id": "call_0"}
    assert counts.written == 2
    strict = convert_chat(str(mixed / "d.jsonl"), str(tmp_path / "u.jsonl"), "sharegpt")
    assert dict(strict.rejected) == {"consecutive_user_turns": 1}
    from pipeline.chat import ValidationRules

    lenient = ValidationRules(allow_consecutive_user_turns=True, allow_no_assistant_turn=True)
    assert convert_chat(str(mixed / "d.jsonl"), str(tmp_path / "v.jsonl"), "sharegpt", rules=lenient).written == 1


def test_files_that_are_not_chat_data_are_named(mixed, tmp_path, capsys):
    # a Parquet column of JSON text is not a list of messages: named, with the record
    with pytest.raises(
        ChatInputError, match=r"c\.parquet: record 0 is in none of the chat formats \(fields: messages\)"
    ):
        convert_chat(str(mixed), str(tmp_path / "all.jsonl"), "openai")
    (tmp_path / "notes.jsonl").write_text('{"title": "x"}\n{"title": ')
    assert main(["convert-chat", str(tmp_path / "notes.jsonl"), str(tmp_path / "n.jsonl"), "--to", "openai"]) == 1
    assert "notes.jsonl: record 0 is in none of the chat formats (fields: title)" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n')
    with pytest.raises(ChatInputError, match="not UTF-8"):
        convert_chat(str(tmp_path / "bad.jsonl"), str(tmp_path / "b.jsonl"), "openai")


def test_a_field_of_an_unexpected_shape_is_a_rejected_record(tmp_path):
    records = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": "yes"}]},
        {"conversations": [{"from": ["h"], "value": "x"}]},
        {"instruction": "x", "output": "y", "history": 5},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    counts = convert_chat(str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), "openai")
    assert counts.written == 1 and counts.balanced()
    assert sum(counts.rejected.values()) == 3
    assert set(counts.rejected) <= {"malformed_openai_record", "malformed_sharegpt_record", "malformed_alpaca_record"}
