"""Chat jobs' tokenize step: each kept conversation rendered with the chat template
(``stages.tokenize.chat``), tokenized, and its loss mask marked (``pipeline.chat.masks``).

A conversation the template refuses (``raise_exception``, a Jinja error) is rejected as
``template_error``, its message counted; one with tool calls that the template does not write (their function
names are not in its rendering, as with a template made for plain chat) is rejected as
``template_drops_tool_calls`` rather than trained on without them; one longer than ``stages.pack.seq_len`` tokens is
rejected as ``conversation_too_long``, or cut at a turn boundary (``over_long: truncate``):
its last turns are dropped until it fits, ending on an assistant turn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.chat.masks import TokenizedConversation, tokenize_conversations
from pipeline.chat.schema import Conversation
from pipeline.chat.templates import TemplateError
from pipeline.core.sketch import log_bucket_base
from pipeline.core.text_tokenizer import SENTENCEPIECE, TextTokenizer

STAGE = "chat_template"
TEMPLATE_ERROR, DROPS_CALLS, TOO_LONG = "template_error", "template_drops_tool_calls", "conversation_too_long"
REASONS = (TEMPLATE_ERROR, DROPS_CALLS, TOO_LONG)
LENGTH_GAMMA = log_bucket_base(0.01)
_MAX_MESSAGES = 20
"""Distinct template error messages a shard's marker keeps."""


def special_token_texts(tokenizer: TextTokenizer, named: dict[str, str | None]) -> dict[str, str]:
    """``bos_token``, ``eos_token``, ``pad_token`` as templates read them."""
    out = {}
    for role in ("bos", "eos", "pad"):
        text = named.get(role)
        token_id = getattr(tokenizer, f"{role}_id")
        if not text and token_id >= 0 and tokenizer.kind == SENTENCEPIECE:
            text = tokenizer.processor.IdToPiece(token_id)
        if text:
            out[f"{role}_token"] = text
    return out


@dataclass
class ChatStats:
    """What a shard's conversations came to (``TokenizeMarker.chat``)."""

    conversations: int = 0
    messages: int = 0
    truncated: int = 0
    trained_tokens: int = 0
    masked_tokens: int = 0
    template_errors: dict[str, int] = field(default_factory=dict)
    length_buckets: dict[int, int] = field(default_factory=dict)
    """Conversation lengths in tokens, counted per logarithmic bucket (``pipeline.core.sketch``,
    ``LENGTH_GAMMA``): percentiles of the whole run add up from the shards'."""

    def add_length(self, tokens: int) -> None:
        bucket = int(math.ceil(math.log(max(tokens, 1)) / math.log(LENGTH_GAMMA)))
        self.length_buckets[bucket] = self.length_buckets.get(bucket, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "messages": self.messages,
            "truncated": self.truncated,
            "trained_tokens": self.trained_tokens,
            "masked_tokens": self.masked_tokens,
            "template_errors": dict(sorted(self.template_errors.items())),
            "length_buckets": {str(b): n for b, n in sorted(self.length_buckets.items())},
        }


class ChatEncoder:
    def __init__(self, template, tokenizer: TextTokenizer, train_on: str, over_long: str, seq_len: int) -> None:
        self.template, self.tokenizer = template, tokenizer
        self.train_on, self.over_long, self.seq_len = train_on, over_long, seq_len

    def encode(
        self, conversations: list[str], stats: ChatStats
    ) -> tuple[list[TokenizedConversation | None], list[str | None]]:
        """Per conversation (JSON text): its tokens and mask, or None and the reject reason."""
        parsed = [json.loads(c) for c in conversations]
        rendered, reasons = [], [None] * len(parsed)
        for i, conversation in enumerate(parsed):
            try:
                rendered.append(self.template.render(conversation))
            except TemplateError as exc:
                rendered.append(None)
                reasons[i] = TEMPLATE_ERROR
                self._count_error(stats, str(exc))
                continue
            calls = [c["name"] for m in conversation["messages"] for c in m.get("tool_calls") or []]
            if any(name not in rendered[-1].text for name in calls):
                rendered[-1] = None
                reasons[i] = DROPS_CALLS
        ok = [i for i, r in enumerate(rendered) if r is not None]
        out: list[TokenizedConversation | None] = [None] * len(parsed)
        try:
            encoded = tokenize_conversations(
                [rendered[i] for i in ok], [parsed[i] for i in ok], self.tokenizer, self.train_on
            )
        except TemplateError:  # weights that cannot be matched to turns: one at a time, to name which
            encoded = [self._one(rendered[i], parsed[i], stats, reasons, i) for i in ok]
        for i, tokens in zip(ok, encoded):
            if tokens is None:
                continue
            if len(tokens.input_ids) > self.seq_len:
                tokens = self._truncated(parsed[i], stats) if self.over_long == "truncate" else None
                if tokens is None:
                    reasons[i] = TOO_LONG
                    continue
            out[i] = tokens
            stats.conversations += 1
            stats.messages += len(parsed[i]["messages"])
            trained = int(tokens.trained.sum())
            stats.trained_tokens += trained
            stats.masked_tokens += len(tokens.input_ids) - trained
            stats.add_length(len(tokens.input_ids))
        return out, reasons

    def _one(self, rendered, conversation, stats, reasons, i) -> TokenizedConversation | None:
        try:
            return tokenize_conversations([rendered], [conversation], self.tokenizer, self.train_on)[0]
        except TemplateError as exc:
            reasons[i] = TEMPLATE_ERROR
            self._count_error(stats, str(exc))
            return None

    def _truncated(self, conversation: Conversation, stats: ChatStats) -> TokenizedConversation | None:
        """The longest prefix that ends on an assistant turn and fits ``seq_len``."""
        messages = conversation["messages"]
        ends = [k + 1 for k, m in enumerate(messages) if m["role"] == "assistant"][::-1]
        for end in ends[1:] if ends and ends[0] == len(messages) else ends:
            prefix = {**conversation, "messages": messages[:end]}
            try:
                tokens = tokenize_conversations(
                    [self.template.render(prefix)], [prefix], self.tokenizer, self.train_on
                )[0]
            except TemplateError:
                continue
            if len(tokens.input_ids) <= self.seq_len and tokens.trained.any():
                stats.truncated += 1
                return tokens
        return None

    @staticmethod
    def _count_error(stats: ChatStats, message: str) -> None:
        message = message[:200]
        if message in stats.template_errors or len(stats.template_errors) < _MAX_MESSAGES:
            stats.template_errors[message] = stats.template_errors.get(message, 0) + 1


def mask_binary(encoded: list[TokenizedConversation]) -> list[bytes]:
    """Each conversation's loss mask as bytes, one per token (1: trained)."""
    return [np.asarray(t.trained, np.uint8).tobytes() for t in encoded]
