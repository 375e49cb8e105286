"""Alpaca, ShareGPT, OpenAI messages and ChatML into one schema and back, with renamed
fields, malformed records and conversations a format cannot hold."""

import json

import pyarrow as pa
import pytest

from pipeline.chat import (
    CONVERSATION_SCHEMA,
    ChatColumns,
    FormatError,
    NotRepresentable,
    conversations_table,
    detect_format,
    message,
    read_conversation,
    write_conversation,
)
from tests.helpers import SHARED_DATA

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "You are terse."},
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": '{"temp": -3}'},
        {"from": "gpt", "value": "It is -3 °C."},
    ],
    "tools": json.dumps(TOOLS),
}
CANONICAL = {
    "conversation_id": "c1",
    "messages": [
        message("system", "You are terse."),
        message("user", "Weather in Oslo?"),
        message("assistant", "", tool_calls=[{"id": "call_0", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]),
        message("tool", '{"temp": -3}', tool_call_id="call_0"),
        message("assistant", "It is -3 °C."),
    ],
    "tools": json.dumps(TOOLS),
}
OPENAI = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": -3}', "tool_call_id": "call_0"},
        {"role": "assistant", "content": "It is -3 °C.", "weight": 1},
    ],
    "tools": TOOLS,
}


def test_sharegpt_with_a_tool_call_reads_into_the_one_schema_and_back():
    assert detect_format(SHAREGPT) == "sharegpt"
    conversation = read_conversation(SHAREGPT, "sharegpt", fallback_id="c1")
    assert conversation == CANONICAL
    back = write_conversation(conversation, "sharegpt")
    assert back.pop("id") == "c1"
    assert back["tools"] == SHAREGPT["tools"]
    assert [t["from"] for t in back["conversations"]] == [t["from"] for t in SHAREGPT["conversations"]]
    for a, b in zip(back["conversations"], SHAREGPT["conversations"]):
        assert (json.loads(a["value"]) if a["from"] == "function_call" else a["value"]) == (
            json.loads(b["value"]) if b["from"] == "function_call" else b["value"]
        )


def test_openai_messages_round_trip_exactly():
    assert detect_format(OPENAI) == "openai"
    conversation = read_conversation(OPENAI, "openai", fallback_id="c1")
    assert conversation["messages"][:4] == CANONICAL["messages"][:4]
    assert conversation["messages"][4]["weight"] == 1.0
    assert write_conversation({**conversation, "conversation_id": None}, "openai") == OPENAI
    # the same conversation from ShareGPT writes the same OpenAI record (but for the weight)
    from_sharegpt = write_conversation({**CANONICAL, "conversation_id": None}, "openai")
    assert from_sharegpt["messages"][:4] == OPENAI["messages"][:4] and from_sharegpt["tools"] == TOOLS


def test_alpaca_with_system_and_history():
    record = {
        "instruction": "Translate to French.",
        "input": "Good morning",
        "output": "Bonjour",
        "system": "You translate.",
        "history": [["Hi", "Hello! How can I help?"]],
    }
    assert detect_format(record) == "alpaca"
    conversation = read_conversation(record, "alpaca")
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("system", "You translate."),
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "Translate to French.\nGood morning"),  # LLaMA-Factory's join of instruction and input
        ("assistant", "Bonjour"),
    ]
    assert write_conversation(conversation, "alpaca") == {
        "instruction": "Translate to French.\nGood morning",
        "input": "",
        "output": "Bonjour",
        "system": "You translate.",
        "history": [["Hi", "Hello! How can I help?"]],
    }
    with pytest.raises(NotRepresentable, match="no tools or tool calls"):
        write_conversation(CANONICAL, "alpaca")
    two_users = {**conversation, "messages": conversation["messages"][:2] + conversation["messages"][3:]}
    with pytest.raises(NotRepresentable, match="alternating user and assistant"):
        write_conversation(two_users, "alpaca")


def test_chatml_text_round_trips_and_refuses_tool_calls():
    text = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    record = {"text": text}
    assert detect_format(record) == "chatml"
    conversation = read_conversation(record, "chatml")
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("system", "Be kind."),
        ("user", "Hi\nthere"),
        ("assistant", "Hello!"),
    ]
    assert write_conversation(conversation, "chatml") == record
    with pytest.raises(NotRepresentable, match="no way to write tool calls"):
        write_conversation(CANONICAL, "chatml")
    with pytest.raises(FormatError, match="outside its turns"):
        read_conversation({"text": "preamble " + text}, "chatml")


def test_renamed_fields_and_malformed_records():
    columns = ChatColumns(id="uid", conversations="dialog", role_tag="speaker", content_tag="text", tools="functions")
    record = {
        "uid": 42,
        "dialog": [{"speaker": t["from"], "text": t["value"]} for t in SHAREGPT["conversations"]],
        "functions": TOOLS,
    }
    assert detect_format(record, columns) == "sharegpt"
    assert read_conversation(record, "sharegpt", columns) == {**CANONICAL, "conversation_id": "42"}
    assert detect_format({"prompt": "x", "completion": "y"}) is None
    broken = {"conversations": [{"from": "function_call", "value": "get_weather(Oslo)"}]}
    with pytest.raises(FormatError, match="function_call turn is not JSON"):
        read_conversation(broken, "sharegpt")
    with pytest.raises(FormatError, match="tools is not valid JSON"):
        read_conversation({**SHAREGPT, "tools": "[{"}, "sharegpt")
    with pytest.raises(FormatError, match="output is int, not a string"):
        read_conversation({"instruction": "x", "output": 3}, "alpaca")


def test_conversations_are_arrow_rows():
    table = conversations_table([CANONICAL, read_conversation(OPENAI, "openai", fallback_id="c2")])
    assert table.schema == CONVERSATION_SCHEMA
    assert table.to_pylist()[0] == CANONICAL
    assert table.column("messages").type.value_type.field("tool_calls").type == pa.list_(
        pa.struct([("id", pa.string()), ("name", pa.string()), ("arguments", pa.string())])
    )


def test_real_sft_files_read_validate_and_round_trip():
    from pipeline.chat import invalid_reason

    folder = SHARED_DATA / "sft"
    if not folder.is_dir():
        pytest.skip(f"SFT data not found at {SHARED_DATA}")
    glaive = json.loads((folder / "glaive_toolcall_en_demo.json").read_text())
    calls = 0
    for i, record in enumerate(glaive):
        conversation = read_conversation(record, detect_format(record), fallback_id=str(i))
        assert invalid_reason(conversation) is None
        calls += sum(len(m["tool_calls"] or []) for m in conversation["messages"])
        back = write_conversation(conversation, "sharegpt")
        assert [t["value"] for t in back["conversations"] if t["from"] != "function_call"] == [
            t["value"] for t in record["conversations"] if t["from"] != "function_call"
        ]
    assert calls == 211  # every function_call turn of the file
    alpaca = json.loads((folder / "alpaca_en_demo.json").read_text())
    assert all(invalid_reason(read_conversation(r, detect_format(r))) is None for r in alpaca)
    missing = json.loads((folder / "axolotl_conversation.missingturns.json").read_text())
    assert invalid_reason(read_conversation(missing, detect_format(missing))) == "empty_content"
