"""One schema for every chat and instruction format: a conversation is a row with its
source's id, a list of messages and the tools the assistant may call.

A message has a ``role`` (``system``, ``user``, ``assistant`` or ``tool``), its ``content``,
the assistant's ``tool_calls`` (each an ``id``, the function's ``name`` and its
``arguments`` as JSON text, as OpenAI's API sends them), the ``tool_call_id`` a tool
result answers, and an optional ``weight`` (0 or 1: whether to train on an assistant turn,
OpenAI's fine-tuning field). ``tools`` is the JSON text of a list of JSON-schema function
definitions (OpenAI's ``{"type": "function", "function": {...}}`` or the bare function
objects of ShareGPT data), or null.

In Python a conversation is a dict of these fields (``Conversation``), which is also what
``pyarrow`` makes of a row of ``CONVERSATION_SCHEMA``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

ROLES = ("system", "user", "assistant", "tool")

TOOL_CALL_TYPE = pa.struct([("id", pa.string()), ("name", pa.string()), ("arguments", pa.string())])
MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        ("tool_call_id", pa.string()),
        ("weight", pa.float32()),
    ]
)
CONVERSATION_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string()),
        pa.field("messages", pa.list_(MESSAGE_TYPE)),
        pa.field("tools", pa.string()),
    ]
)

Conversation = dict[str, Any]
Message = dict[str, Any]


def message(
    role: str,
    content: str | None,
    tool_calls: list[dict[str, str]] | None = None,
    tool_call_id: str | None = None,
    weight: float | None = None,
) -> Message:
    return {
        "role": role,
        "content": content,
        "tool_calls": tool_calls or None,
        "tool_call_id": tool_call_id,
        "weight": weight,
    }


def conversations_table(conversations: list[Conversation]) -> pa.Table:
    return pa.Table.from_pylist(conversations, schema=CONVERSATION_SCHEMA)
