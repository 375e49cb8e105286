"""The two sections of a chat job's spec: how its input is read (``input.chat``) and how
its conversations become tokens (``stages.tokenize.chat``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from pipeline.chat.formats import ChatColumns
from pipeline.chat.masks import TrainOn
from pipeline.chat.templates import ChatTemplate, TemplateSettings, read_template
from pipeline.chat.validation import ValidationRules
from pipeline.core import storage


class ChatInputConfig(BaseModel):
    """``input.chat``: the input is chat or instruction data. Each record (a JSON lines line,
    an element of a JSON array file, or a Parquet row) becomes one conversation."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "alpaca", "sharegpt", "openai", "chatml"] = "auto"
    """``auto`` tells each record's format by its fields: ``messages`` of ``{role, content}``
    (OpenAI), ``conversations`` of ``{from, value}`` (ShareGPT), ``instruction`` and
    ``output`` (Alpaca), or ChatML text in ``text``."""
    columns: ChatColumns = ChatColumns()
    """Field names, for sources that renamed them (e.g. ``conversations: dialog``,
    ``role_tag: speaker``). The record's id is ``input.id_column``, not ``columns.id``."""
    allow_consecutive_user_turns: bool = False
    """Keep conversations with two user messages in a row (else rejected:
    ``consecutive_user_turns``)."""
    allow_no_assistant_turn: bool = False
    """Keep conversations without an assistant message (else rejected: ``no_assistant_turn``)."""
    dedup_on: Literal["conversation", "first_user_turn"] = "conversation"
    """What exact and near dedup compare: the whole conversation's text, or only its first
    user message (Self-Instruct's rule for prompts: one answer per prompt)."""

    @model_validator(mode="after")
    def _id_is_input_id_column(self) -> ChatInputConfig:
        if self.columns.id is not None:
            raise ValueError(
                f"columns.id: a chat job's record id is input.id_column; set input.id_column: {self.columns.id}"
            )
        return self

    @property
    def rules(self) -> ValidationRules:
        return ValidationRules(
            allow_consecutive_user_turns=self.allow_consecutive_user_turns,
            allow_no_assistant_turn=self.allow_no_assistant_turn,
        )


class ChatTokenizeConfig(BaseModel):
    """``stages.tokenize.chat``: render each conversation with the chat template of the model
    to be trained, tokenize it and mark the tokens a fine-tuning step trains on."""

    model_config = ConfigDict(extra="forbid")

    template: str = "chatml"
    """``chatml`` (built in), a ``.jinja`` file, or a model's ``tokenizer_config.json`` (its
    ``chat_template``), local or ``s3://`` (read with ``stages.tokenize.storage_options``)."""
    train_on: TrainOn = "assistant"
    """``assistant``: every assistant turn (its text and end-of-turn marker); ``last_assistant``:
    the last one only; ``all``: every token. A message's ``weight: 0`` leaves it untrained."""
    over_long: Literal["reject", "truncate"] = "reject"
    """A conversation longer than ``stages.pack.seq_len`` tokens once rendered: ``reject`` it
    (reason ``conversation_too_long``), or ``truncate`` it at a turn boundary: drop its last
    turns until it fits, ending on an assistant turn (rejected when not even the first exchange fits)."""
    date: dt.date = TemplateSettings().date
    """What the template's ``strftime_now`` returns, so that a rendering does not depend on the day."""

    def load(self, special_tokens: dict[str, str], options: storage.StorageOptions) -> ChatTemplate:
        return ChatTemplate(read_template(self.template, options), special_tokens, TemplateSettings(date=self.date))


_SPECIAL_LOOKING = re.compile(r"<\|[^<>|\s]{1,64}\|>|<[A-Za-z_]{1,32}>")
_PROBE = {
    "conversation_id": "probe",
    "messages": [
        {"role": "system", "content": "S", "tool_calls": None, "tool_call_id": None, "weight": None},
        {"role": "user", "content": "U", "tool_calls": None, "tool_call_id": None, "weight": None},
        {"role": "assistant", "content": "A", "tool_calls": None, "tool_call_id": None, "weight": None},
    ],
    "tools": None,
}


def missing_special_tokens(template: ChatTemplate, token_id) -> list[str]:
    """Special-token-like strings (``<|im_start|>``, ``<start_of_turn>``) that the template
    writes for a plain system/user/assistant exchange and ``token_id`` (the tokenizer's
    lookup) does not know: the tokenizer would split them into ordinary pieces."""
    try:
        text = template.render(_PROBE).text
    except ValueError:  # a template that refuses a system message, say: judged on real data
        return []
    found = dict.fromkeys(_SPECIAL_LOOKING.findall(text))
    return [token for token in found if token_id(token) is None]
