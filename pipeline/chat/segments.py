"""A conversation as one text for the document stages, and back.

The stages that read text (language, rules, classifiers, perplexity, contamination, PII,
dedup) see a conversation as its text fields joined by ``SEGMENT_BREAK``: each message's
content, then the string values inside each of its tool calls' arguments, in order. A stage
that rewrites text (PII scrubbing) rewrites those fields in place; ``with_text`` puts them
back into the conversation, so that scrubbing keeps the messages, the tool calls and their
JSON structure whole. Stages that match spans (contamination) split the text at the break,
so a match never spans two messages.

The break is a line of its own holding U+FDD0, a Unicode noncharacter (reserved for a
program's internal use; no text carries it): inputs that hold one have it replaced by U+FFFD
when they are read (``clean``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pipeline.chat.schema import Conversation
from pipeline.core.columns import SEGMENT_BREAK

_RESERVED = "\ufdd0"


class SegmentsChanged(ValueError):
    """A stage's rewrite of a conversation's text removed or added a break between its fields."""


def clean(text: str | None) -> str | None:
    return text.replace(_RESERVED, "\ufffd") if text and _RESERVED in text else text


def _string_leaves(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _string_leaves(item, out)
    elif isinstance(value, list):
        for item in value:
            _string_leaves(item, out)


def _replace_leaves(value: Any, replacements: list[str]) -> Any:
    """``value`` with its string leaves taken, in order, from ``replacements`` (consumed)."""
    if isinstance(value, str):
        return replacements.pop(0)
    if isinstance(value, dict):
        return {key: _replace_leaves(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_leaves(item, replacements) for item in value]
    return value


def _arguments(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text  # not JSON (validation rejects it): the whole text is one field


def segments(conversation: Conversation) -> list[str]:
    """The conversation's text fields in order."""
    out: list[str] = []
    for m in conversation["messages"] or []:
        out.append(m.get("content") or "")
        for call in m.get("tool_calls") or []:
            _string_leaves(_arguments(call.get("arguments")), out)
    return out


def conversation_text(conversation: Conversation) -> str:
    return SEGMENT_BREAK.join(segments(conversation))


def with_text(conversation: Conversation, text: str) -> Conversation:
    """The conversation with its text fields replaced by those of ``text`` (a rewrite of
    ``conversation_text(conversation)``); ``SegmentsChanged`` when the field count differs."""
    fields = text.split(SEGMENT_BREAK)
    expected = len(segments(conversation))
    if len(fields) != expected:
        raise SegmentsChanged(f"the text has {len(fields)} fields where the conversation has {expected}")
    out = copy.deepcopy(conversation)
    for m in out["messages"] or []:
        content = fields.pop(0)
        if m.get("content") is not None or content:
            m["content"] = content
        for call in m.get("tool_calls") or []:
            parsed = _arguments(call.get("arguments"))
            if isinstance(parsed, str) and parsed == call.get("arguments"):  # not JSON: one field
                call["arguments"] = fields.pop(0)
            elif parsed is not None:
                before: list[str] = []
                _string_leaves(parsed, before)
                replaced = _replace_leaves(parsed, fields)
                after: list[str] = []
                _string_leaves(replaced, after)
                if after != before:  # unchanged arguments keep their own JSON text
                    call["arguments"] = json.dumps(replaced, ensure_ascii=False)
    return out


def first_user_turn(conversation: Conversation) -> str:
    """The first user message's content ("" when there is none): what Self-Instruct
    deduplicates prompts on."""
    for m in conversation["messages"] or []:
        if m["role"] == "user":
            return m.get("content") or ""
    return ""
