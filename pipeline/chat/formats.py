"""Alpaca, ShareGPT, OpenAI chat messages and ChatML text, to and from the one schema
(``pipeline.chat.schema``).

Reading follows LLaMA-Factory's converters (``src/llamafactory/data/converter.py``), the
de-facto reference for these formats:

- **Alpaca** ``{instruction, input, output, system?, history?}``: ``history`` is a list of
  earlier ``[user, assistant]`` pairs; the user turn is the instruction, then a line break
  and the input when there is one.
- **ShareGPT** ``{conversations: [{from, value}], system?, tools?}``: ``human`` -> user,
  ``gpt`` -> assistant, ``system``, ``function_call`` -> an assistant turn calling a tool
  (its value is the JSON of ``{"name", "arguments"}``, or a list of them),
  ``observation`` -> the tool's result, answering the calls of the turn before it, in order.
  ``tools`` is a list of function definitions or its JSON text.
- **OpenAI** ``{messages: [{role, content, tool_calls?, tool_call_id?, weight?}], tools?}``.
- **ChatML** text: ``<|im_start|>role\\ncontent<|im_end|>`` turns.

``ChatColumns`` renames the fields a source uses. A record that is malformed for its format
raises ``FormatError`` with what is wrong; a conversation's content is judged afterwards by
``pipeline.chat.validation``.

Writing is the reverse. Alpaca holds one exchange (with optional system and history) and no
tools, and ChatML has no tool calls: a conversation they cannot hold raises
``NotRepresentable`` rather than lose a turn. An Alpaca record's input comes back inside its
instruction (after a line break): the one schema has one user turn.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.chat.schema import Conversation, Message, message

ChatFormat = Literal["alpaca", "sharegpt", "openai", "chatml"]
FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "openai", "chatml")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
_CHATML_TURN = re.compile(r"<\|im_start\|>([^\n]*)\n(.*?)<\|im_end\|>", re.S)


class FormatError(ValueError):
    """A record that is not what its format says; the message says what is wrong."""


class NotRepresentable(FormatError):
    """A conversation the target format cannot hold (it would lose a turn or a tool call)."""


class ChatColumns(BaseModel):
    """Where each format keeps its fields, for sources that renamed them."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    """The source's own id field, if any."""
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    system: str = "system"
    history: str = "history"
    conversations: str = "conversations"
    messages: str = "messages"
    tools: str = "tools"
    text: str = "text"
    role_tag: str = "from"
    """ShareGPT: the key of a turn's speaker..."""
    content_tag: str = "value"
    """...and of its text."""


def format_fields(fmt: ChatFormat, columns: ChatColumns = ChatColumns()) -> set[str]:
    """The record fields ``fmt`` reads the conversation from (the rest may be carried)."""
    return {
        "alpaca": {columns.instruction, columns.input, columns.output, columns.system, columns.history},
        "sharegpt": {columns.conversations, columns.system, columns.tools},
        "openai": {columns.messages, columns.tools},
        "chatml": {columns.text},
    }[fmt]


def detect_format(record: dict[str, Any], columns: ChatColumns = ChatColumns()) -> ChatFormat | None:
    """The format a record is in, from its fields; None if none fits."""
    for key in (columns.messages, columns.conversations):
        turns = record.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            return "openai" if "role" in turns[0] else "sharegpt" if columns.role_tag in turns[0] else None
    if columns.instruction in record and columns.output in record:
        return "alpaca"
    text = record.get(columns.text)
    if isinstance(text, str) and "<|im_start|>" in text:
        return "chatml"
    return None


def read_conversation(
    record: dict[str, Any], fmt: ChatFormat, columns: ChatColumns = ChatColumns(), fallback_id: str | None = None
) -> Conversation:
    """The record in the one schema; ``FormatError`` if it is malformed for ``fmt``."""
    reader = {"alpaca": _from_alpaca, "sharegpt": _from_sharegpt, "openai": _from_openai, "chatml": _from_chatml}[fmt]
    try:
        messages, tools = reader(record, columns)
    except FormatError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a field of an unexpected shape
        raise FormatError(f"a field has an unexpected shape ({type(exc).__name__}: {exc})") from None
    source_id = record.get(columns.id) if columns.id else None
    return {
        "conversation_id": str(source_id) if source_id is not None else fallback_id,
        "messages": messages,
        "tools": _tools_text(tools),
    }


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormatError(f"{what} is {type(value).__name__}, not a string")
    return value


def _tools_text(tools: Any) -> str | None:
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            parsed = json.loads(tools)
        except ValueError as exc:
            raise FormatError(f"tools is not valid JSON: {exc}") from None
    else:
        parsed = tools
    if not isinstance(parsed, list):
        raise FormatError("tools is not a list of function definitions")
    return json.dumps(parsed, ensure_ascii=False) if parsed else None


def _from_alpaca(record: dict[str, Any], c: ChatColumns) -> tuple[list[Message], Any]:
    messages = []
    system = _text(record.get(c.system), c.system)
    if system:
        messages.append(message("system", system))
    for pair in record.get(c.history) or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise FormatError(f"{c.history} holds {pair!r}, not a [user, assistant] pair")
        messages += [message("user", _text(pair[0], c.history)), message("assistant", _text(pair[1], c.history))]
    query = _text(record.get(c.instruction), c.instruction)
    extra = _text(record.get(c.input), c.input)
    messages.append(message("user", f"{query}\n{extra}" if extra else query))
    messages.append(message("assistant", _text(record.get(c.output), c.output)))
    return messages, None


def _calls_of(value: str, first_index: int) -> list[dict[str, str]]:
    """ShareGPT's function_call value: the JSON of one {"name", "arguments"} or of a list."""
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise FormatError(f"a function_call turn is not JSON: {exc}") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or "name" not in call:
            raise FormatError(f"a function_call turn holds {json.dumps(call)[:80]}, not {{name, arguments}}")
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        out.append({"id": f"call_{first_index + i}", "name": str(call["name"]), "arguments": text})
    return out


def _from_sharegpt(record: dict[str, Any], c: ChatColumns) -> tuple[list[Message], Any]:
    turns = record.get(c.conversations)
    if not isinstance(turns, list):
        raise FormatError(f"{c.conversations} is not a list of turns")
    messages: list[Message] = []
    system = _text(record.get(c.system), c.system) if c.system in record else ""
    if system:
        messages.append(message("system", system))
    pending: list[str] = []  # ids of calls not answered yet
    calls_made = 0
    for turn in turns:
        if not isinstance(turn, dict):
            raise FormatError(f"a turn of {c.conversations} is {type(turn).__name__}, not an object")
        tag = turn.get(c.role_tag)
        content = _text(turn.get(c.content_tag), f"a '{tag}' turn's {c.content_tag}")
        role = SHAREGPT_ROLES.get(tag, tag if isinstance(tag, str) else str(tag))
        if tag == "function_call":
            calls = _calls_of(content, calls_made)
            calls_made += len(calls)
            pending = [call["id"] for call in calls]
            messages.append(message("assistant", "", tool_calls=calls))
        elif role == "tool":
            messages.append(message("tool", content, tool_call_id=pending.pop(0) if pending else None))
        else:
            messages.append(message(role, content))
    return messages, record.get(c.tools)


def _from_openai(record: dict[str, Any], c: ChatColumns) -> tuple[list[Message], Any]:
    turns = record.get(c.messages)
    if not isinstance(turns, list):
        raise FormatError(f"{c.messages} is not a list of messages")
    messages = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise FormatError(f"a message of {c.messages} is {type(turn).__name__}, not an object")
        content = turn.get("content")
        if isinstance(content, list):  # content parts: the text ones, joined
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        calls = []
        for call in turn.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or "name" not in function:
                raise FormatError(f"a tool call is {json.dumps(call)[:80]}, not {{id, function: {{name, arguments}}}}")
            arguments = function.get("arguments", "")
            text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            calls.append({"id": call.get("id"), "name": str(function["name"]), "arguments": text})
        weight = turn.get("weight")
        messages.append(
            message(
                str(turn.get("role")),
                _text(content, "a message's content"),
                tool_calls=calls,
                tool_call_id=turn.get("tool_call_id"),
                weight=float(weight) if weight is not None else None,
            )
        )
    return messages, record.get(c.tools)


def _from_chatml(record: dict[str, Any], c: ChatColumns) -> tuple[list[Message], Any]:
    text = _text(record.get(c.text), c.text)
    turns = _CHATML_TURN.findall(text)
    if not turns:
        raise FormatError(f"{c.text} has no <|im_start|>role ... <|im_end|> turn")
    leftover = _CHATML_TURN.sub("", text).strip()
    if leftover:
        raise FormatError(f"{c.text} has text outside its turns: {leftover[:60]!r}")
    return [message(role.strip(), content) for role, content in turns], None


# --- writing ------------------------------------------------------------------------------


def write_conversation(conversation: Conversation, fmt: ChatFormat) -> dict[str, Any]:
    """The conversation as a record of ``fmt``; ``FormatError`` if ``fmt`` cannot hold it."""
    writer = {"alpaca": _to_alpaca, "sharegpt": _to_sharegpt, "openai": _to_openai, "chatml": _to_chatml}[fmt]
    record = writer(conversation)
    if conversation.get("conversation_id") is not None:
        record = {"id": conversation["conversation_id"], **record}
    return record


def _tools(conversation: Conversation) -> list | None:
    return json.loads(conversation["tools"]) if conversation.get("tools") else None


def _to_openai(conversation: Conversation) -> dict[str, Any]:
    messages = []
    for m in conversation["messages"]:
        out: dict[str, Any] = {"role": m["role"], "content": m["content"]}
        if m.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in m["tool_calls"]
            ]
        if m.get("tool_call_id") is not None:
            out["tool_call_id"] = m["tool_call_id"]
        if m.get("weight") is not None:
            out["weight"] = int(m["weight"]) if float(m["weight"]).is_integer() else m["weight"]
        messages.append(out)
    record: dict[str, Any] = {"messages": messages}
    tools = _tools(conversation)
    if tools is not None:
        record["tools"] = tools
    return record


def _to_sharegpt(conversation: Conversation) -> dict[str, Any]:
    turns = []
    for m in conversation["messages"]:
        if m["role"] == "assistant" and m.get("tool_calls"):
            if m.get("content"):
                turns.append({"from": "gpt", "value": m["content"]})
            calls = [{"name": c["name"], "arguments": _arguments_value(c["arguments"])} for c in m["tool_calls"]]
            value = calls[0] if len(calls) == 1 else calls
            turns.append({"from": "function_call", "value": json.dumps(value, ensure_ascii=False)})
        else:
            tag = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}.get(
                m["role"], m["role"]
            )
            turns.append({"from": tag, "value": m["content"]})
    record: dict[str, Any] = {"conversations": turns}
    if conversation.get("tools"):
        record["tools"] = conversation["tools"]
    return record


def _arguments_value(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _to_alpaca(conversation: Conversation) -> dict[str, Any]:
    messages = list(conversation["messages"])
    if conversation.get("tools") or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        raise NotRepresentable("Alpaca records hold no tools or tool calls")
    system = messages.pop(0)["content"] if messages and messages[0]["role"] == "system" else None
    roles = [m["role"] for m in messages]
    if len(messages) < 2 or len(messages) % 2 or roles != ["user", "assistant"] * (len(messages) // 2):
        raise NotRepresentable("Alpaca records hold alternating user and assistant turns that end with the assistant's")
    record: dict[str, Any] = {"instruction": messages[-2]["content"], "input": "", "output": messages[-1]["content"]}
    if system is not None:
        record["system"] = system
    if len(messages) > 2:
        record["history"] = [
            [messages[i]["content"], messages[i + 1]["content"]] for i in range(0, len(messages) - 2, 2)
        ]
    return record


def _to_chatml(conversation: Conversation) -> dict[str, Any]:
    if any(m.get("tool_calls") for m in conversation["messages"]):
        raise NotRepresentable("ChatML text has no way to write tool calls; write openai or sharegpt")
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation["messages"])
    return {"text": text}
