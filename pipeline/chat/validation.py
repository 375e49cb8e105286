"""What makes a conversation unfit to train on, each a named reason, in the order they are
checked (the first that applies is the conversation's):

- ``unknown_role``: a role other than system, user, assistant and tool;
- ``system_not_first``: a system message after the first message;
- ``empty_content``: a message with no text (an assistant turn that calls tools may have
  none; a tool result may not);
- ``tool_arguments_not_json``: a call's arguments that do not parse as JSON;
- ``unknown_tool``: a call to a function the conversation's ``tools`` do not define (only
  when it has tools);
- ``orphan_tool_result``: a tool result whose call id no earlier call has, or with no call
  waiting for an answer;
- ``consecutive_user_turns``: two user messages in a row (unless allowed);
- ``no_assistant_turn``: no assistant message at all (unless allowed).

These are the checks of torchtune's ``validate_messages`` and LLaMA-Factory's converter,
made into counted reasons instead of exceptions.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from pipeline.chat.schema import ROLES, Conversation

REASONS = (
    "unknown_role",
    "system_not_first",
    "empty_content",
    "tool_arguments_not_json",
    "unknown_tool",
    "orphan_tool_result",
    "consecutive_user_turns",
    "no_assistant_turn",
)


class ValidationRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_consecutive_user_turns: bool = False
    allow_no_assistant_turn: bool = False


def tool_names(tools_text: str | None) -> set[str] | None:
    """The function names a ``tools`` list defines (OpenAI's wrapped form or bare functions);
    None when there are no tools."""
    if not tools_text:
        return None
    names = set()
    for tool in json.loads(tools_text):
        if isinstance(tool, dict):
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            if isinstance(function.get("name"), str):
                names.add(function["name"])
    return names


def invalid_reason(conversation: Conversation, rules: ValidationRules = ValidationRules()) -> str | None:
    """The first reason the conversation is unfit, or None."""
    messages = conversation["messages"] or []
    if any(m["role"] not in ROLES for m in messages):
        return "unknown_role"
    if any(m["role"] == "system" for m in messages[1:]):
        return "system_not_first"
    for m in messages:
        if not (m.get("content") or "").strip() and not (m["role"] == "assistant" and m.get("tool_calls")):
            return "empty_content"
    defined = tool_names(conversation.get("tools"))
    for m in messages:
        for call in m.get("tool_calls") or []:
            try:
                json.loads(call["arguments"])
            except (TypeError, ValueError):
                return "tool_arguments_not_json"
            if defined is not None and call["name"] not in defined:
                return "unknown_tool"
    waiting: list[str | None] = []
    for m in messages:
        if m.get("tool_calls"):
            waiting = [call.get("id") for call in m["tool_calls"]]
        elif m["role"] == "tool":
            answered = m.get("tool_call_id")
            if not waiting or (answered is not None and answered not in waiting):
                return "orphan_tool_result"
            waiting.remove(answered if answered is not None else waiting[0])
    roles = [m["role"] for m in messages]
    if not rules.allow_consecutive_user_turns and any(a == b == "user" for a, b in zip(roles, roles[1:])):
        return "consecutive_user_turns"
    if not rules.allow_no_assistant_turn and "assistant" not in roles:
        return "no_assistant_turn"
    return None
