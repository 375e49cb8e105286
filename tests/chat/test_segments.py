"""A conversation as one text for the document stages, and back: a rewrite of the text
(PII scrubbing) lands in the right message and inside tool-call arguments, whose JSON
stays valid and whose untouched values keep their own JSON text."""

import json

import pytest

from pipeline.chat import message
from pipeline.chat.segments import SegmentsChanged, clean, conversation_text, first_user_turn, segments, with_text
from pipeline.core.columns import SEGMENT_BREAK


def _conversation():
    call = {"id": "c1", "name": "send", "arguments": json.dumps({"to": "ann@example.com", "n": 3, "cc": ["bo@x.org"]})}
    return {
        "conversation_id": "x",
        "messages": [
            message("system", "Be brief."),
            message("user", "Mail ann@example.com please"),
            message("assistant", "", tool_calls=[call]),
            message("tool", '{"ok": true}', tool_call_id="c1"),
            message("assistant", "Sent."),
        ],
        "tools": None,
    }


def test_fields_in_order_and_rewrites_land_in_place():
    conversation = _conversation()
    assert segments(conversation) == [
        "Be brief.",
        "Mail ann@example.com please",
        "",
        "ann@example.com",
        "bo@x.org",
        '{"ok": true}',
        "Sent.",
    ]
    text = conversation_text(conversation)
    assert text.count(SEGMENT_BREAK) == 6
    scrubbed = with_text(conversation, text.replace("ann@example.com", "<EMAIL>").replace("bo@x.org", "<EMAIL>"))
    assert scrubbed["messages"][1]["content"] == "Mail <EMAIL> please"
    call = scrubbed["messages"][2]["tool_calls"][0]
    assert json.loads(call["arguments"]) == {"to": "<EMAIL>", "n": 3, "cc": ["<EMAIL>"]}
    assert scrubbed["messages"][3]["content"] == '{"ok": true}'
    assert conversation["messages"][1]["content"] == "Mail ann@example.com please"  # the input is not changed
    same = with_text(conversation, text)
    assert same == conversation  # untouched arguments keep their exact JSON text


def test_a_rewrite_that_merges_fields_is_refused():
    conversation = _conversation()
    text = conversation_text(conversation).replace(SEGMENT_BREAK + "Sent.", " Sent.")
    with pytest.raises(SegmentsChanged):
        with_text(conversation, text)


def test_reserved_character_and_first_user_turn():
    assert clean("a\ufdd0b") == "a\ufffdb" and clean("plain") == "plain"
    assert first_user_turn(_conversation()) == "Mail ann@example.com please"
    assert first_user_turn({"messages": [message("assistant", "hi")]}) == ""
