"""Chat templates rendered as transformers renders them, and the assistant spans a loss
mask trains on: hand-checked renderings, {% generation %} blocks, the real templates of
current model families (../shared/data/chat_templates), and templates that raise."""

import json

import pytest

from pipeline.chat import message, read_conversation
from pipeline.chat.templates import CHATML, ChatTemplate, TemplateError, TemplateSettings, read_template
from tests.helpers import SHARED_DATA

TEMPLATES = SHARED_DATA / "chat_templates"
SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}


def _conversation(*messages, tools=None):
    return {"conversation_id": "c", "messages": list(messages), "tools": tools}


TWO_TURNS = _conversation(
    message("system", "Be brief."),
    message("user", "Hi"),
    message("assistant", "Hello!"),
    message("user", "2+2?"),
    message("assistant", "4"),
)
WITH_TOOL = _conversation(
    message("user", "Weather in Oslo?"),
    message("assistant", "", tool_calls=[{"id": "call_0", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]),
    message("tool", '{"temp": -3}', tool_call_id="call_0"),
    message("assistant", "-3 °C."),
    tools=json.dumps(
        [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    ),
)


def _template(name: str) -> ChatTemplate:
    if not TEMPLATES.is_dir():
        pytest.skip(f"chat templates not found at {SHARED_DATA}")
    return ChatTemplate(read_template(str(TEMPLATES / f"{name}.jinja")), SPECIAL)


def test_builtin_chatml_renders_and_marks_each_assistant_turn():
    rendered = ChatTemplate(CHATML).render(TWO_TURNS)
    assert rendered.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    )
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == ["Hello!<|im_end|>\n", "4<|im_end|>\n"]


def test_llama3_as_its_tokenizer_renders_it():
    rendered = _template("llama3").render(TWO_TURNS)
    assert rendered.text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
    )
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == ["Hello!<|eot_id|>", "4<|eot_id|>"]


@pytest.mark.parametrize(
    "name, text, spans",
    [
        (
            "mistral_v7_tekken",
            "<|begin_of_text|>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello!<|end_of_text|>"
            "[INST]2+2?[/INST]4<|end_of_text|>",
            ["Hello!<|end_of_text|>", "4<|end_of_text|>"],
        ),
        (
            "gemma3",  # the system prompt goes into the first user turn; the model's turns are "model"
            "<|begin_of_text|><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!"
            "<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
            ["Hello!<end_of_turn>\n", "4<end_of_turn>\n"],
        ),
        (
            "qwen_25",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            "Hello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
            ["Hello!<|im_end|>\n", "4<|im_end|>\n"],
        ),
        (
            "phi_4",
            "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
            "<|im_start|>assistant<|im_sep|>Hello!<|im_end|><|im_start|>user<|im_sep|>2+2?<|im_end|>"
            "<|im_start|>assistant<|im_sep|>4<|im_end|>",
            ["Hello!<|im_end|>", "4<|im_end|>"],
        ),
    ],
)
def test_hand_checked_renderings_and_spans(name, text, spans):
    """Each model family's own layout (its published prompt format), and assistant spans
    that are the reply and its end-of-turn marker, not the header the prompt holds."""
    rendered = _template(name).render(TWO_TURNS)
    assert rendered.text == text
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == spans


def test_qwen3_multi_turn_with_reasoning():
    """Qwen 3 drops the reasoning of turns before the last question and writes a ``<think>``
    block in the last turn only, so a turn renders differently once later turns follow: each
    turn's span is what it is within the whole conversation, with its end-of-turn marker."""
    template = _template("qwen3")
    thinking = _conversation(
        message("system", "Be brief."),
        message("user", "Hi"),
        message("assistant", "<think>\nSay hi.\n</think>\n\nHello!"),
        message("user", "2+2?"),
        message("assistant", "<think>\nAdd.\n</think>\n\n4"),
    )
    rendered = template.render(thinking)
    assert rendered.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
        "<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nAdd.\n</think>\n\n4<|im_end|>\n"
    )
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == [
        "Hello!<|im_end|>\n",
        "Add.\n</think>\n\n4<|im_end|>\n",
    ]
    plain = template.render(TWO_TURNS)  # no reasoning: the last turn's empty block follows the prompt's "<think>"
    assert [plain.text[s:e] for s, e in plain.assistant_spans] == ["Hello!<|im_end|>\n", "</think>\n\n4<|im_end|>\n"]
    # a tool round trip: the call, then the answer after the tool's result
    tools = template.render(WITH_TOOL)
    assert [tools.text[s:e] for s, e in tools.assistant_spans] == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n',
        "</think>\n\n-3 °C.<|im_end|>\n",
    ]


def test_builtin_chatml_writes_tools_and_tool_calls():
    rendered = ChatTemplate(CHATML).render(WITH_TOOL)
    assert rendered.text.startswith("<|im_start|>system\n# Tools\n") and '"name": "get_weather"' in rendered.text
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n',
        "-3 °C.<|im_end|>\n",
    ]
    assert '<|im_start|>tool\n{"temp": -3}<|im_end|>\n' in rendered.text


def test_qwen25_renders_tools_and_tool_calls_as_objects():
    rendered = _template("qwen_25").render(WITH_TOOL)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in rendered.text
    spans = [rendered.text[s:e] for s, e in rendered.assistant_spans]
    assert spans == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n',
        "-3 °C.<|im_end|>\n",
    ]
    assert '<tool_response>\n{"temp": -3}\n</tool_response>' in rendered.text


def test_generation_blocks_mark_what_the_prefix_rule_finds():
    """Phi-4's template marks its assistant turns with {% generation %}; reading the spans off
    prefixes of the conversation gives the same ranges."""
    phi = _template("phi_4")
    assert phi.tracks_generation
    tracked = phi.render(TWO_TURNS)
    assert [tracked.text[s:e] for s, e in tracked.assistant_spans] == ["Hello!<|im_end|>", "4<|im_end|>"]
    by_prefix = ChatTemplate(phi.text.replace("{% generation %}", "").replace("{% endgeneration %}", ""), SPECIAL)
    assert not by_prefix.tracks_generation
    assert by_prefix.render(TWO_TURNS).assistant_spans == tracked.assistant_spans


def test_a_template_that_raises_names_its_message():
    with pytest.raises(TemplateError, match="Conversation roles must alternate"):
        _template("gemma3").render(WITH_TOOL)
    with pytest.raises(TemplateError, match="Only user, system and assistant roles are supported"):
        _template("mistral_v7_tekken").render(WITH_TOOL)


def test_strftime_now_reads_the_fixed_date():
    text = _template("mistral_v7_tekken").render(TWO_TURNS).text
    assert "The current date is 2024-07-26." not in text  # a system message replaces the default
    alone = _conversation(message("user", "Hi"), message("assistant", "Hello"))
    assert "The current date is 2024-07-26." in _template("mistral_v7_tekken").render(alone).text
    other_day = ChatTemplate(_template("mistral_v7_tekken").text, SPECIAL, TemplateSettings(date="2025-01-02"))
    assert "The current date is 2025-01-02." in other_day.render(alone).text


def test_unknown_filters_unsafe_access_and_unstable_prefixes():
    with pytest.raises(ValueError, match="does not compile: No filter named 'shout'"):
        ChatTemplate("{{ messages[0]['content'] | shout }}")
    for sneaky in (
        "{{ messages.__class__.__mro__ }}",
        "{{ messages[0].__class__.__mro__ }}",  # a message is read past the sandbox's attribute check
        "{% for m in messages %}{{ loop.__class__.__mro__ }}{% endfor %}",  # so is the loop's state
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ messages.append(1) }}",
    ):
        with pytest.raises(TemplateError, match="the chat template failed"):
            ChatTemplate(sneaky).render(TWO_TURNS)
    # attributes keep Jinja's meaning: a dict's own methods first, then its keys, else undefined
    fields = ChatTemplate(
        "{{ messages[0].items is callable }} {{ messages[0].role }} {{ messages[0].nope is defined }}"
    )
    assert fields.render(TWO_TURNS).text == "True system False"
    # a template that drops earlier assistant turns: those have no span (nothing of them is trained)
    last_only = ChatTemplate(
        "{% for m in messages %}{% if m.role != 'assistant' or loop.last %}{{ m.role }}: {{ m.content }}\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    rendered = last_only.render(TWO_TURNS)
    assert [rendered.text[s:e] for s, e in rendered.assistant_spans] == ["4\n"]
    # one that also lists earlier replies up front once later turns follow: refused, not guessed
    echoes = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}[{{ m.content }}]{% endif %}"
        "{% endfor %}\n{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(TemplateError, match="renders turn 2 differently"):
        echoes.render(TWO_TURNS)


def test_templates_come_from_tokenizer_config_json(tmp_path):
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>"}))
    assert read_template(str(config)) == CHATML
    config.write_text(
        json.dumps({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]})
    )
    assert read_template(str(config)) == CHATML
    config.write_text(json.dumps({"eos_token": "</s>"}))
    with pytest.raises(ValueError, match="has no chat_template"):
        read_template(str(config))
    assert read_template(None) == read_template("chatml") == CHATML


def test_every_real_template_renders_real_conversations():
    """Every template of ../shared/data renders the Alpaca and tool-call samples, or refuses
    one with the template's own message; none fails any other way."""
    folder = SHARED_DATA / "sft"
    if not folder.is_dir() or not TEMPLATES.is_dir():
        pytest.skip(f"SFT data not found at {SHARED_DATA}")
    records = json.loads((folder / "alpaca_en_demo.json").read_text())[:40]
    records += json.loads((folder / "glaive_toolcall_en_demo.json").read_text())[:40]
    conversations = [read_conversation(r, "alpaca" if "instruction" in r else "sharegpt") for r in records]
    for path in sorted(TEMPLATES.glob("*.jinja")):
        template = ChatTemplate(read_template(str(path)), SPECIAL)
        rendered = 0
        for conversation in conversations[:40]:  # single-turn, no tools: every template takes these
            result = template.render(conversation)
            (start, end), *_ = result.assistant_spans
            assert conversation["messages"][-1]["content"].strip() in result.text[start:end], path.name
            rendered += 1
        for conversation in conversations[40:]:
            try:
                result = template.render(conversation)
            except TemplateError:
                continue
            assistants = [m for m in conversation["messages"] if m["role"] == "assistant"]
            assert len(result.assistant_spans) <= len(assistants), path.name
        assert rendered == 40


def test_a_python_error_inside_a_template_is_a_template_error():
    adds_a_dict = ChatTemplate(
        "{% for m in messages %}{% for c in m.tool_calls or [] %}{{ 'args: ' + c.function.arguments }}"
        "{% endfor %}{{ m.content }}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="the chat template failed"):
        adds_a_dict.render(WITH_TOOL)
