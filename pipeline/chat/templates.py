"""A model's chat template, rendered as ``transformers`` renders it, and where in the
rendered text each assistant turn lies (what a loss mask trains on).

Templates are Jinja, as in a tokenizer's ``tokenizer_config.json`` (``chat_template``) or a
``.jinja`` file; ``chatml`` names a built-in ChatML template. They are rendered in Jinja's
immutable sandbox with what ``transformers``' ``apply_chat_template`` gives them:
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, ``raise_exception``,
``strftime_now``, a ``tojson`` filter that keeps non-ASCII text, ``messages``, ``tools``,
``add_generation_prompt`` and the tokenizer's special tokens (``bos_token``, ...).
``strftime_now`` reads a fixed date (``TemplateSettings.date``), so that the same data renders
the same text on any day.

Messages reach the template in OpenAI's form, with a tool call's arguments parsed into an
object (``transformers`` asks for that: templates write them with ``tojson``); ShareGPT's
bare function definitions are wrapped as ``{"type": "function", "function": ...}``.

Assistant spans. A template with ``{% generation %}`` blocks marks them itself, as
``transformers``' ``return_assistant_tokens_mask`` reads them. For one without, assistant turn
``i`` is what rendering the conversation up to and including ``i`` adds to rendering it up to
``i`` with the generation prompt: the turn's text and its end-of-turn marker, not the header
the prompt already holds. Where the template renders a turn differently once later turns
follow (Qwen 3 keeps reasoning and an empty ``<think>`` block only after the last question),
the turn is the part of the whole rendering that changes when its message is swapped for a
sentinel, followed by the end-of-turn text the template writes after a last assistant
message; a turn the template leaves out of the whole conversation has no span. A template
whose turns fit neither reading raises ``TemplateError`` naming the turn, never a wrong mask.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.chat.schema import Conversation
from pipeline.core import storage

CHATML = """\
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] + '\n\n' }}
    {%- endif %}
    {{- '# Tools\n\nFunction signatures, within <tools></tools>:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + tool | tojson }}
    {%- endfor %}
    {{- '\n</tools>\n\nTo call functions, write a JSON object with the function name and arguments within '
        '<tool_call></tool_call> per call.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if not (tools and loop.first and message['role'] == 'system') %}
        {{- '<|im_start|>' + message['role'] + '\n' + message['content'] }}
        {%- for call in (message['tool_calls'] if 'tool_calls' in message else none) or [] %}
            {{- ('\n' if message['content'] or not loop.first else '') + '<tool_call>\n' }}
            {{- {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}
            {{- '\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
"""ChatML (``<|im_start|>role\\ncontent<|im_end|>``); tool definitions in a system turn and
tool calls as ``<tool_call>`` JSON, as Hermes and Qwen 2.5 write them."""


# what the swapped message holds: U+FDD0 is replaced in every input (pipeline.chat.segments.clean)
_SENTINEL = "\ufdd0assistant turn\ufdd0"


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


class TemplateError(ValueError):
    """The template cannot render a conversation (it raised, or its output is not what a mask
    can be read from); the message is the template's or says which turn."""


class TemplateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date = dt.date(2024, 7, 26)
    """What ``strftime_now`` formats (Llama 3.1's templates default to this day too)."""


@dataclass
class Rendered:
    text: str
    assistant_spans: list[tuple[int, int]] = field(default_factory=list)
    """Character ranges of the assistant turns, in order (one per assistant message that
    the template renders)."""


def read_template(source: str | None, options: storage.StorageOptions | None = None) -> str:
    """The template's text: ``chatml`` or None for the built-in, a ``.jinja`` file, or a
    ``tokenizer_config.json`` (its ``chat_template``; of a list of named templates, ``default``)."""
    if source in (None, "chatml"):
        return CHATML
    data = storage.read_bytes(source, options).decode("utf-8")
    if not source.endswith(".json"):
        return data
    try:
        template = json.loads(data).get("chat_template")
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"'{source}' is not a tokenizer_config.json: {exc}") from None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str):
        raise ValueError(f"'{source}' has no chat_template")
    return template


_DICT_ATTRIBUTES = frozenset(dir(dict))
_MISSING = object()


def _environment(tracker: list | None):
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    loop_attributes = frozenset(name for name in dir(LoopContext) if not name.startswith("_"))

    class GenerationBlocks(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: records where its output lands."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_generation", []), [], [], body).set_lineno(lineno)

        def _generation(self, caller):
            rendered = caller()
            if tracker is not None:
                tracker.append(rendered)
            return rendered

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class Sandbox(ImmutableSandboxedEnvironment):
        def getattr(self, obj, attribute):
            # ``message.content``: Jinja tries the attribute first, which a dict never has,
            # and then the key, paying an exception per lookup (a fifth of rendering
            # ChatML); a plain dict's keys are read directly, with the same result
            if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
                value = obj.get(attribute, _MISSING)
                return self.undefined(obj=obj, name=attribute) if value is _MISSING else value
            if type(obj) is LoopContext and attribute in loop_attributes:  # all safe: loop.first, ...
                return getattr(obj, attribute)
            return super().getattr(obj, attribute)

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlocks, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def template_messages(conversation: Conversation) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The conversation as ``apply_chat_template`` takes it: OpenAI-form messages (a tool
    call's arguments as an object) and tools."""
    messages = []
    for m in conversation["messages"]:
        out: dict[str, Any] = {"role": m["role"], "content": m["content"] or ""}
        if m.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": _parsed(c["arguments"])},
                }
                for c in m["tool_calls"]
            ]
        if m.get("tool_call_id") is not None:
            out["tool_call_id"] = m["tool_call_id"]
        messages.append(out)
    tools = None
    if conversation.get("tools"):
        tools = [
            t if isinstance(t, dict) and "function" in t else {"type": "function", "function": t}
            for t in json.loads(conversation["tools"])
        ]
    return messages, tools


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        return arguments


class ChatTemplate:
    """A compiled template with the tokenizer's special tokens."""

    def __init__(
        self, text: str, special_tokens: dict[str, str] | None = None, settings: TemplateSettings = TemplateSettings()
    ):
        import jinja2

        self.text = text
        self.special_tokens = dict(special_tokens or {})
        self.tracks_generation = "generation" in text and "endgeneration" in text
        self._tracker: list[str] = []
        env = _environment(self._tracker)
        date = settings.date
        env.globals["strftime_now"] = lambda fmt: dt.datetime(date.year, date.month, date.day).strftime(fmt)
        try:
            self.compiled = env.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"the chat template does not compile: {exc.message} (line {exc.lineno})") from None
        # Jinja's render() merges its globals into a fresh dict on every call (a quarter of the
        # time of rendering a short conversation): merged once here, with the special tokens
        self._variables = {**dict(self.compiled.globals), **self.special_tokens}

    def _render(self, messages, tools, add_generation_prompt: bool) -> str:
        variables = {**self._variables, "messages": messages, "tools": tools}
        variables["add_generation_prompt"] = add_generation_prompt
        try:
            return "".join(self.compiled.root_render_func(self.compiled.new_context(variables, shared=True)))
        except TemplateError:
            raise
        except Exception as exc:  # Jinja's errors, and Python's from inside the template
            raise TemplateError(f"the chat template failed: {exc}") from None

    def render(self, conversation: Conversation) -> Rendered:
        """The whole conversation rendered (no generation prompt), with its assistant spans."""
        messages, tools = template_messages(conversation)
        if self.tracks_generation:
            return self._render_tracked(messages, tools)
        text = self._render(messages, tools, False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = self._render(messages[:i], tools, True)
            through = text if i == len(messages) - 1 else self._render(messages[: i + 1], tools, False)
            if through.startswith(prompt) and text.startswith(through):
                span = (len(prompt), len(through))
            else:
                span = self._swapped_span(messages, tools, i, text)
            if span is not None and span[1] > span[0]:
                spans.append(span)
        return Rendered(text, spans)

    def _swapped_span(self, messages, tools, i: int, text: str) -> tuple[int, int] | None:
        """Assistant turn ``i`` of a template that renders it differently once later turns
        follow (Qwen 3 drops the reasoning of turns before the last question, and writes an
        empty ``<think>`` block only in the last turn): the part of the whole rendering that
        changes when the message is swapped for a sentinel, then the end-of-turn text the
        template writes after an assistant message. None when the template leaves the turn
        out of the whole conversation."""
        sentinel = {"role": "assistant", "content": _SENTINEL}
        swapped = self._render([*messages[:i], sentinel, *messages[i + 1 :]], tools, False)
        if swapped == text:
            return None
        start = _common_prefix(text, swapped)
        tail = _common_prefix(text[start:][::-1], swapped[start:][::-1])
        if swapped[start : len(swapped) - tail].count(_SENTINEL) != 1 or swapped.count(_SENTINEL) != 1:
            raise TemplateError(
                f"the chat template renders turn {i} differently within the whole conversation than on its "
                "own, and not as one part of it, so its assistant span cannot be read off; use a template with "
                "{% generation %} blocks"
            )
        alone = self._render([*messages[:i], sentinel], tools, False)
        end_of_turn = alone[alone.index(_SENTINEL) + len(_SENTINEL) :]
        end = len(text) - tail
        if not text.startswith(end_of_turn, end):
            raise TemplateError(
                f"the chat template does not end turn {i} with {end_of_turn!r} within the whole conversation, as it "
                "does when the turn is the last, so its assistant span cannot be read off; use a template with "
                "{% generation %} blocks"
            )
        return start, end + len(end_of_turn)

    def _render_tracked(self, messages, tools) -> Rendered:
        """Rendered piece by piece (Jinja's ``generate``), as ``transformers`` tracks
        ``{% generation %}`` blocks: each block's text is located in the piece it came with."""

        self._tracker.clear()
        pieces: list[str] = []
        spans = []
        position = 0
        stream = self.compiled.generate(
            messages=messages, tools=tools, add_generation_prompt=False, **self.special_tokens
        )
        try:
            while True:
                seen = len(self._tracker)
                try:
                    piece = next(stream)
                except StopIteration:
                    break
                cursor = 0
                for block in self._tracker[seen:]:
                    at = piece.find(block, cursor)
                    if at < 0:
                        raise TemplateError("a {% generation %} block's text is not where the template put it")
                    spans.append((position + at, position + at + len(block)))
                    cursor = at + len(block)
                pieces.append(piece)
                position += len(piece)
        except TemplateError:
            raise
        except Exception as exc:  # Jinja's errors, and Python's from inside the template
            raise TemplateError(f"the chat template failed: {exc}") from None
        return Rendered("".join(pieces), [(s, e) for s, e in spans if e > s])
