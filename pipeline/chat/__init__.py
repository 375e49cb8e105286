"""Chat and instruction data: one schema for Alpaca, ShareGPT, OpenAI messages and ChatML
(``schema``), reading and writing each format (``formats``), the named reasons a
conversation is unfit to train on (``validation``), a model's chat template rendered with
the spans of its assistant turns (``templates``), loss masks (``masks``), SFT packing
(``packing``), a conversation as one text for the document stages and back (``segments``),
and the spec sections of chat jobs (``config``)."""

from pipeline.chat.formats import (
    FORMATS,
    ChatColumns,
    ChatFormat,
    FormatError,
    NotRepresentable,
    detect_format,
    read_conversation,
    write_conversation,
)
from pipeline.chat.schema import CONVERSATION_SCHEMA, ROLES, Conversation, conversations_table, message
from pipeline.chat.validation import REASONS, ValidationRules, invalid_reason

__all__ = [
    "CONVERSATION_SCHEMA",
    "FORMATS",
    "REASONS",
    "ROLES",
    "ChatColumns",
    "ChatFormat",
    "Conversation",
    "FormatError",
    "NotRepresentable",
    "ValidationRules",
    "conversations_table",
    "detect_format",
    "invalid_reason",
    "message",
    "read_conversation",
    "write_conversation",
]
