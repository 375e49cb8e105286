"""Loss masks from rendered conversations: the trained tokens are exactly the assistant
turns (and their end-of-turn tokens), by train_on and weight, for a tokenizer.json and a
sentencepiece model."""

import numpy as np
import pytest

from pipeline.chat import message
from pipeline.chat.masks import IGNORE_INDEX, tokenize_conversation
from pipeline.chat.templates import CHATML, ChatTemplate, TemplateError
from pipeline.core.text_tokenizer import load_text_tokenizer
from pipeline.tools.train_tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def bpe(sample_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("chat-bpe") / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=1500, tokenizer_format="tokenizer.json")
    return load_text_tokenizer(str(out))


def _conversation(weights=(None, None)):
    return {
        "conversation_id": "c",
        "messages": [
            message("system", "Be brief."),
            message("user", "Hi there"),
            message("assistant", "Hello! How are you?", weight=weights[0]),
            message("user", "What is 2+2?"),
            message("assistant", "It is 4.", weight=weights[1]),
        ],
        "tools": None,
    }


def _trained_text(tokenizer, tokenized) -> str:
    return tokenizer.decode(tokenized.input_ids[tokenized.trained].tolist())


def test_trained_tokens_are_the_assistant_turns(bpe):
    conversation = _conversation()
    rendered = ChatTemplate(CHATML).render(conversation)
    tokenized = tokenize_conversation(rendered, conversation, bpe)
    assert bpe.decode(tokenized.input_ids.tolist()) == rendered.text
    assert _trained_text(bpe, tokenized) == "Hello! How are you?<|im_end|>\nIt is 4.<|im_end|>\n"
    im_end = bpe.token_id("<|im_end|>")
    assert im_end is not None and np.sum(tokenized.input_ids == im_end) == 5  # special tokens stay single tokens
    labels = tokenized.labels
    assert np.all(labels[~tokenized.trained] == IGNORE_INDEX)
    assert np.all(labels[tokenized.trained] == tokenized.input_ids[tokenized.trained])


def test_train_on_and_weights(bpe):
    conversation = _conversation()
    rendered = ChatTemplate(CHATML).render(conversation)
    last = tokenize_conversation(rendered, conversation, bpe, "last_assistant")
    assert _trained_text(bpe, last) == "It is 4.<|im_end|>\n"
    everything = tokenize_conversation(rendered, conversation, bpe, "all")
    assert everything.trained.all()
    weighted = _conversation(weights=(0, 1))
    tokenized = tokenize_conversation(ChatTemplate(CHATML).render(weighted), weighted, bpe)
    assert _trained_text(bpe, tokenized) == "It is 4.<|im_end|>\n"
    only_first = _conversation(weights=(1, 0))
    assert (
        tokenize_conversation(ChatTemplate(CHATML).render(only_first), only_first, bpe, "last_assistant").trained.sum()
        == 0
    )


def test_weights_need_every_assistant_turn_rendered(bpe):
    drops_first = ChatTemplate(
        "{% for m in messages %}{% if not (m.role == 'assistant' and loop.index0 == 2) %}{{ m.role }}: {{ m.content }}\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    conversation = _conversation(weights=(1, 1))
    rendered = drops_first.render(
        {**conversation, "messages": conversation["messages"][:2] + conversation["messages"][3:]}
    )
    with pytest.raises(TemplateError, match="renders 1 of the 2 assistant messages"):
        tokenize_conversation(rendered, conversation, bpe)


def test_sentencepiece_offsets_cover_multibyte_text(tokenizer_model):
    sp = load_text_tokenizer(str(tokenizer_model))
    conversation = {
        "conversation_id": "c",
        "messages": [message("user", "Grüße aus Köln"), message("assistant", "日本語で答えます — ok")],
        "tools": None,
    }
    rendered = ChatTemplate(CHATML).render(conversation)
    ids, starts, ends = sp.encode_with_offsets(rendered.text)
    assert sp.decode(ids) == rendered.text
    assert starts[0] == 0 and ends[-1] == len(rendered.text) and np.all(starts[1:] >= starts[:-1])
    tokenized = tokenize_conversation(rendered, conversation, sp)
    ((start, end),) = rendered.assistant_spans
    assert rendered.text[start:end] in _trained_text(sp, tokenized)
    untrained = sp.decode(tokenized.input_ids[~tokenized.trained].tolist())
    assert "Grüße aus Köln" in untrained and "日本語" not in untrained
