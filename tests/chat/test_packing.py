"""Conversations packed whole into padding-free sequences, with position ids restarting at
each conversation, their lengths, and labels masked as the conversations' masks say."""

import json

import numpy as np
import pytest

from pipeline.chat.masks import IGNORE_INDEX, TokenizedConversation
from pipeline.chat.packing import SFT_SCHEMA, ConversationTooLong, pack_conversations
from tests.helpers import SHARED_DATA


def _conversations(n: int, longest: int, seed: int = 0) -> list[TokenizedConversation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(1, longest + 1))
        ids = np.full(length, i, np.int64)  # each token names its conversation
        out.append(TokenizedConversation(ids, rng.random(length) < 0.5))
    return out


@pytest.mark.parametrize("sort", ["arrival", "decreasing"])
def test_every_conversation_once_whole_and_in_bounds(sort):
    conversations = _conversations(500, 300)
    packed = pack_conversations(conversations, 512, sort)
    table = packed.table
    assert table.schema == SFT_SCHEMA
    seen = []
    for row, members in zip(table.to_pylist(), packed.members):
        ids = np.array(row["input_ids"])
        assert len(ids) <= 512 and sum(row["seq_lengths"]) == len(ids) == len(row["labels"])
        assert row["seq_lengths"] == [len(conversations[i].input_ids) for i in members]
        at = 0
        for i, length in zip(members, row["seq_lengths"]):
            assert np.all(ids[at : at + length] == i)  # whole and contiguous
            assert row["position_ids"][at : at + length] == list(range(length))
            trained = conversations[i].trained
            labels = np.array(row["labels"][at : at + length])
            assert np.all(labels[trained] == i) and np.all(labels[~trained] == IGNORE_INDEX)
            assert row["assistant_masks"][at : at + length] == trained.astype(int).tolist()
            at += length
        seen += members
    assert sorted(seen) == list(range(500))
    assert packed.tokens == sum(len(c.input_ids) for c in conversations)
    assert packed.efficiency > 0.9


def test_decreasing_fills_at_least_as_tight_and_too_long_is_refused():
    conversations = _conversations(2000, 900, seed=3)
    arrival = pack_conversations(conversations, 1024, "arrival")
    decreasing = pack_conversations(conversations, 1024, "decreasing")
    assert decreasing.table.num_rows <= arrival.table.num_rows
    assert decreasing.efficiency >= 0.97
    with pytest.raises(ConversationTooLong, match="1 conversations are longer than seq_len 1024 .the first: 1025"):
        pack_conversations([*conversations, TokenizedConversation(np.zeros(1025, np.int64), np.ones(1025, bool))], 1024)
    assert pack_conversations([], 1024).table.num_rows == 0


def test_alpaca_packs_at_least_97_percent_full(tokenizer_model, sample_corpus, tmp_path):
    from pipeline.chat import read_conversation
    from pipeline.chat.masks import tokenize_conversation
    from pipeline.chat.templates import CHATML, ChatTemplate
    from pipeline.core.text_tokenizer import load_text_tokenizer
    from pipeline.tools.train_tokenizer import train_tokenizer

    path = SHARED_DATA / "sft" / "alpaca_en_demo.json"
    if not path.exists():
        pytest.skip(f"Alpaca data not found at {SHARED_DATA}")
    train_tokenizer(
        str(sample_corpus), str(tmp_path / "tokenizer.json"), vocab_size=4000, tokenizer_format="tokenizer.json"
    )
    tokenizer = load_text_tokenizer(str(tmp_path / "tokenizer.json"))
    template = ChatTemplate(CHATML)
    conversations = []
    for record in json.loads(path.read_text()):
        conversation = read_conversation(record, "alpaca")
        conversations.append(tokenize_conversation(template.render(conversation), conversation, tokenizer))
    packed = pack_conversations(conversations, 2048)
    assert packed.efficiency >= 0.97
    assert sum(len(m) for m in packed.members) == len(conversations) == 999


def test_a_conversation_without_tokens_is_refused():
    empty = TokenizedConversation(np.zeros(0, np.int64), np.zeros(0, bool))
    with pytest.raises(ValueError, match="conversation 1 has no tokens"):
        pack_conversations([*_conversations(1, 5), empty], 64)
