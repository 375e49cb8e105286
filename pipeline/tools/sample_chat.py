"""``refinery sample-chat``: instruction data from text on any Python 3.11 machine, in each
of the chat formats, for the SFT demo (``jobs/sft_quickstart.yaml``) and tests.

Conversations are made from the standard library's docstrings and function sources (as
``refinery sample`` reads them): a user asks what a function or module does and the
assistant answers with its docstring's first paragraph, then is asked for the source; some
conversations call a ``lookup_docs`` tool and answer from its result. They are written as
an Alpaca JSON array (single-turn), ShareGPT JSON lines with tool calls (gzipped) and OpenAI
``messages`` JSON lines. Planted on purpose and listed in ``_plants.json``: exact duplicates, two
prompts answered twice, conversations that break a validation rule (two user turns in a
row, no assistant turn), a malformed record, and messages with PII (reserved example values).
"""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

from pipeline.core import storage
from pipeline.tools.sample import _harvest

LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_docs",
        "description": "The documentation of a Python standard library object",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "dotted name, e.g. json.dumps"}},
            "required": ["name"],
        },
    },
}
SYSTEMS = ["You are a concise Python tutor.", "You answer questions about the Python standard library."]
ASKS = [
    "What does `{name}` do?",
    "Explain `{name}` in plain words.",
    "I keep seeing `{name}` in code. What is it for?",
    "Can you summarize the documentation of `{name}`?",
]


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


def _conversation(rng: random.Random, name: str, doc: str, code: str | None, n: int) -> list[dict[str, Any]]:
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    messages.append({"role": "user", "content": rng.choice(ASKS).format(name=name)})
    messages.append({"role": "assistant", "content": _first_paragraph(doc)})
    if code is not None and rng.random() < 0.5:
        messages.append({"role": "user", "content": f"Show me how `{code[0]}` is written."})
        messages.append({"role": "assistant", "content": f"Here is its source:\n\n```python\n{code[1]}```"})
    return messages


def _tool_conversation(rng: random.Random, name: str, doc: str, n: int) -> list[dict[str, Any]]:
    call_id = f"call_{n}"
    return [
        {"role": "user", "content": f"Look up `{name}` for me and tell me what it does."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "lookup_docs", "arguments": json.dumps({"name": name})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"name": name, "doc": doc[:600]})},
        {"role": "assistant", "content": f"`{name}`: {_first_paragraph(doc)}"},
    ]


def _to_sharegpt(messages: list[dict[str, Any]]) -> dict[str, Any]:
    turns, system = [], None
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
        elif m.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                for c in m["tool_calls"]
            ]
            turns.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls)})
        else:
            tag = {"user": "human", "assistant": "gpt", "tool": "observation"}[m["role"]]
            turns.append({"from": tag, "value": m["content"]})
    record: dict[str, Any] = {"conversations": turns, "tools": json.dumps([LOOKUP_TOOL["function"]])}
    if system:
        record["system"] = system
    return record


def build_chat_samples(num_conversations: int, seed: int = 0) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Records per file (``alpaca.json``, ``sharegpt.jsonl.gz``, ``openai.jsonl``), and what was planted."""
    rng = random.Random(seed)
    docs, code = _harvest(limit_docs=max(50, num_conversations), limit_code=max(20, num_conversations // 3))
    alpaca: list[dict[str, Any]] = []
    sharegpt: list[dict[str, Any]] = []
    openai: list[dict[str, Any]] = []
    plants: dict[str, Any] = {"exact_duplicates": [], "same_prompt": [], "invalid": [], "malformed": [], "pii": []}
    for n in range(num_conversations):
        name, doc = docs[n % len(docs)]
        kind = n % 5
        if kind == 0:
            prompt = rng.choice(ASKS).format(name=name)
            alpaca.append({"id": f"alpaca-{n}", "instruction": prompt, "input": "", "output": _first_paragraph(doc)})
        elif kind in (1, 2):
            messages = _tool_conversation(rng, name, doc, n) if kind == 1 else _conversation(rng, name, doc, None, n)
            sharegpt.append({"id": f"sharegpt-{n}", **_to_sharegpt(messages)})
        else:
            source = code[n % len(code)] if code else None
            messages = _conversation(rng, name, doc, source, n)
            record: dict[str, Any] = {"id": f"openai-{n}", "messages": messages}
            if n % 17 == 3:
                messages[-1]["content"] += f" Questions go to docs.team{n}@example.org."
                plants["pii"].append(record["id"])
            openai.append(record)
    for record in openai[: max(1, len(openai) // 50)]:
        openai.append({**json.loads(json.dumps(record)), "id": f"{record['id']}-copy"})
        plants["exact_duplicates"].append(f"{record['id']}-copy")
    if alpaca:
        first = alpaca[0]
        alpaca.append(
            {**first, "id": f"{first['id']}-again", "output": "Another answer, written differently: " + first["output"]}
        )
        plants["same_prompt"].append(f"{first['id']}-again")
    openai.append(
        {
            "id": "openai-two-users",
            "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}],
        }
    )
    openai.append({"id": "openai-unanswered", "messages": [{"role": "user", "content": "Is anyone there?"}]})
    plants["invalid"] += ["openai-two-users", "openai-unanswered"]
    openai.append(
        {
            "id": "openai-malformed",  # a tool call without its function
            "messages": [{"role": "user", "content": "Call it."}, {"role": "assistant", "tool_calls": [{"id": "c"}]}],
        }
    )
    plants["malformed"].append("openai-malformed")
    return {"alpaca.json": alpaca, "sharegpt.jsonl.gz": sharegpt, "openai.jsonl": openai}, plants


def write_chat_samples(out: str, num_conversations: int = 1000, seed: int = 0) -> dict[str, Any]:
    files, plants = build_chat_samples(num_conversations, seed)
    for name, records in files.items():
        if name.endswith(".json"):
            data = json.dumps(records, indent=1, ensure_ascii=False).encode()
        else:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
            if name.endswith(".gz"):
                data = gzip.compress(data, mtime=0)
        storage.write_bytes(storage.join(out, name), data)
    storage.write_bytes(storage.join(out, "_plants.json"), (json.dumps(plants, indent=2) + "\n").encode())
    return {
        "records": {name: len(records) for name, records in files.items()},
        "plants": {k: len(v) for k, v in plants.items()},
    }
