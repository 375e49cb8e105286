"""A rendered conversation as tokens and a loss mask: which tokens a fine-tuning step trains
on (``train_on``), with each assistant message's ``weight`` honoured.

A token is trained when its characters overlap an assistant span of the rendering
(``templates.Rendered``), the rule ``transformers`` applies to ``{% generation %}`` blocks
(the tokens from the one holding a span's first character to the one holding its last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.chat.schema import Conversation
from pipeline.chat.templates import Rendered, TemplateError
from pipeline.core.text_tokenizer import TextTokenizer

TrainOn = Literal["assistant", "all", "last_assistant"]
IGNORE_INDEX = -100
"""The label of a token not trained on (PyTorch's cross-entropy ``ignore_index``)."""


@dataclass
class TokenizedConversation:
    input_ids: np.ndarray
    trained: np.ndarray
    """True where the token is trained on."""

    @property
    def labels(self) -> np.ndarray:
        return np.where(self.trained, self.input_ids, IGNORE_INDEX)


def trained_spans(rendered: Rendered, conversation: Conversation, train_on: TrainOn) -> list[tuple[int, int]]:
    """The character ranges trained on."""
    if train_on == "all":
        return [(0, len(rendered.text))]
    weights = [m.get("weight") for m in conversation["messages"] if m["role"] == "assistant"]
    spans = list(rendered.assistant_spans)
    if any(w is not None for w in weights):
        if len(weights) != len(spans):
            raise TemplateError(
                f"the template renders {len(spans)} of the {len(weights)} assistant messages, so their weights "
                "cannot be matched to them"
            )
    else:
        weights = [None] * len(spans)
    chosen = list(zip(spans, weights))
    if train_on == "last_assistant":  # the last turn, trained unless its own weight is 0
        chosen = chosen[-1:]
    return [span for span, weight in chosen if weight is None or weight > 0]


def tokenize_conversation(
    rendered: Rendered, conversation: Conversation, tokenizer: TextTokenizer, train_on: TrainOn = "assistant"
) -> TokenizedConversation:
    return tokenize_conversations([rendered], [conversation], tokenizer, train_on)[0]


def tokenize_conversations(
    rendered: list[Rendered],
    conversations: list[Conversation],
    tokenizer: TextTokenizer,
    train_on: TrainOn = "assistant",
) -> list[TokenizedConversation]:
    """``tokenize_conversation`` of each, the texts encoded in one batch."""
    spans = [trained_spans(r, c, train_on) for r, c in zip(rendered, conversations)]
    encoded = tokenizer.encode_marking([r.text for r in rendered], spans)
    return [TokenizedConversation(ids, trained) for ids, trained in encoded]
