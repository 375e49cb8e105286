"""Each named reason a conversation is unfit to train on, in its order, and the rules that
allow two of them."""

import json

import pytest

from pipeline.chat import REASONS, ValidationRules, invalid_reason, message

TOOLS = json.dumps([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])


def _conversation(*messages, tools=None):
    return {"conversation_id": "c", "messages": list(messages), "tools": tools}


def _call(name="lookup", arguments='{"q": "x"}', call_id="call_0"):
    return {"id": call_id, "name": name, "arguments": arguments}


GOOD = [message("user", "Find x"), message("assistant", "", tool_calls=[_call()])]
CASES = {
    "unknown_role": [message("user", "hi"), message("narrator", "meanwhile")],
    "system_not_first": [message("user", "hi"), message("system", "late"), message("assistant", "hello")],
    "empty_content": [message("user", "  "), message("assistant", "hello")],
    "tool_arguments_not_json": [message("user", "x"), message("assistant", "", tool_calls=[_call(arguments="q=x")])],
    "unknown_tool": [message("user", "x"), message("assistant", "", tool_calls=[_call(name="delete_all")])],
    "orphan_tool_result": [
        message("user", "x"),
        message("tool", "42", tool_call_id="call_9"),
        message("assistant", "ok"),
    ],
    "consecutive_user_turns": [message("user", "a"), message("user", "b"), message("assistant", "c")],
    "no_assistant_turn": [message("system", "s"), message("user", "a")],
}


@pytest.mark.parametrize("reason", REASONS)
def test_each_reason(reason):
    assert invalid_reason(_conversation(*CASES[reason], tools=TOOLS)) == reason


def test_a_valid_tool_conversation_passes():
    messages = [*GOOD, message("tool", '{"x": 1}', tool_call_id="call_0"), message("assistant", "x is 1")]
    assert invalid_reason(_conversation(*messages, tools=TOOLS)) is None
    assert invalid_reason(_conversation(*messages)) is None  # no tools listed: any function name
    unanswered_twice = [*messages[:3], message("tool", "again", tool_call_id="call_0"), messages[3]]
    assert invalid_reason(_conversation(*unanswered_twice, tools=TOOLS)) == "orphan_tool_result"


def test_rules_allow_consecutive_users_and_no_assistant():
    rules = ValidationRules(allow_consecutive_user_turns=True, allow_no_assistant_turn=True)
    assert invalid_reason(_conversation(*CASES["consecutive_user_turns"]), rules) is None
    assert invalid_reason(_conversation(*CASES["no_assistant_turn"]), rules) is None
    # the first reason in order wins
    both = [message("user", "a"), message("system", "b"), message("user", "")]
    assert invalid_reason(_conversation(*both)) == "system_not_first"
