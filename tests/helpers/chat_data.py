"""Small chat datasets in every input format, written by the tests (always available)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOPICS = [
    "rivers of Europe",
    "the water cycle",
    "how bread rises",
    "prime numbers",
    "the history of printing",
    "why the sky is blue",
    "how vaccines work",
    "the rules of chess",
    "volcanoes",
    "photosynthesis",
    "the metric system",
    "how bridges carry loads",
]


def openai_record(i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    return {
        "id": f"oa-{i}",
        "messages": [
            {"role": "system", "content": "You are a patient teacher."},
            {"role": "user", "content": f"Question {i}: explain {topic} to a student in a few sentences."},
            {
                "role": "assistant",
                "content": f"Answer {i}. Here is a short explanation of {topic}, step by step, with one example.",
            },
            {"role": "user", "content": f"Thanks. Give me one more fact about {topic}, number {i}."},
            {"role": "assistant", "content": f"Fact {i}: {topic} has been studied for centuries.", "weight": 1},
        ],
    }


def tool_record(i: int, email: str | None = None) -> dict:
    city = ["Lisbon", "Oslo", "Quito", "Hanoi"][i % 4]
    arguments = {"city": city} if email is None else {"city": city, "notify": email}
    return {
        "id": f"tool-{i}",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": f"What is the weather in {city} today? (request {i})"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps({"temperature_c": 10 + i % 15})},
            {"role": "assistant", "content": f"It is {10 + i % 15} degrees Celsius in {city} right now."},
        ],
    }


def alpaca_record(i: int) -> dict:
    topic = TOPICS[(i + 3) % len(TOPICS)]
    return {
        "instruction": f"Write two sentences about {topic} (task {i}).",
        "input": "" if i % 2 else f"Audience: readers of issue {i}.",
        "output": f"Task {i}: {topic} is a good subject. It rewards careful study and practice.",
    }


def sharegpt_record(i: int) -> dict:
    topic = TOPICS[(i + 5) % len(TOPICS)]
    return {
        "conversations": [
            {"from": "human", "value": f"Summarize {topic} for me, please ({i})."},
            {"from": "gpt", "value": f"Summary {i}: {topic}, in short, is about causes and effects."},
        ]
    }


def write_chat_inputs(root: Path, n: int = 12) -> dict[str, int]:
    """OpenAI JSON lines (with tool calls), an Alpaca JSON array, gzipped ShareGPT JSON lines
    and OpenAI records in Parquet; returns how many records each file holds."""
    root.mkdir(parents=True, exist_ok=True)
    openai = [openai_record(i) for i in range(n)] + [tool_record(i) for i in range(n // 2)]
    (root / "openai.jsonl").write_text("".join(json.dumps(r) + "\n" for r in openai))
    alpaca = [alpaca_record(i) for i in range(n)]
    (root / "alpaca.json").write_text(json.dumps(alpaca, indent=2))
    sharegpt = [sharegpt_record(i) for i in range(n)]
    (root / "sharegpt.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in sharegpt).encode()))
    table = pa.Table.from_pylist([openai_record(100 + i) for i in range(n)])
    pq.write_table(table, root / "openai.parquet")
    return {"openai.jsonl": len(openai), "alpaca.json": n, "sharegpt.jsonl.gz": n, "openai.parquet": n}
