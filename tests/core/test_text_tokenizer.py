"""One tokenizer interface over sentencepiece models and Hugging Face tokenizer.json files:
what the file's own library gives, special tokens from the spec or tokenizer_config.json,
and clear errors."""

import json
import os
import subprocess
import sys

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers

from pipeline.core.text_tokenizer import load_text_tokenizer
from pipeline.tools.train_tokenizer import train_tokenizer
from tests.helpers import REPO

TEXTS = ["Hello  wörld\n\tcode 123 — ✓ 日本語", "", "  leading spaces and trailing  ", "x" * 5000]


@pytest.fixture(scope="module")
def bpe_json(sample_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=1200, tokenizer_format="tokenizer.json")
    return out


def test_a_tokenizer_json_encodes_as_tokenizers_and_decodes_losslessly(bpe_json):
    tokenizer = load_text_tokenizer(str(bpe_json))
    raw = Tokenizer.from_file(str(bpe_json))
    assert tokenizer.kind == "tokenizers" and tokenizer.vocab_size == raw.get_vocab_size() == 1200
    # special tokens from the tokenizer_config.json train-tokenizer writes beside it
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (
        -1,
        raw.token_to_id("<|endoftext|>"),
        raw.token_to_id("<|pad|>"),
    )
    encoded = tokenizer.encode(TEXTS, add_bos=False, add_eos=True)
    assert [ids[:-1] for ids in encoded] == [e.ids for e in raw.encode_batch(TEXTS, add_special_tokens=False)]
    assert all(ids[-1] == tokenizer.eos_id for ids in encoded)
    assert [tokenizer.decode(ids[:-1]) for ids in encoded] == TEXTS


def test_spec_tokens_override_tokenizer_config(bpe_json, tmp_path):
    tokenizer = load_text_tokenizer(str(bpe_json), special={"bos": "<|im_start|>", "eos": "<|im_end|>", "pad": None})
    assert tokenizer.bos_id == tokenizer.token_id("<|im_start|>") and tokenizer.eos_id == tokenizer.token_id(
        "<|im_end|>"
    )
    assert tokenizer.pad_id == tokenizer.token_id("<|pad|>")  # unset in the spec: tokenizer_config.json's
    assert tokenizer.encode(["ab"], add_bos=True, add_eos=True)[0][0] == tokenizer.bos_id
    alone = tmp_path / "tokenizer.json"
    alone.write_bytes(bpe_json.read_bytes())  # no tokenizer_config.json here
    bare = load_text_tokenizer(str(alone))
    assert (bare.bos_id, bare.eos_id, bare.pad_id) == (-1, -1, -1)
    with pytest.raises(ValueError, match="its eos token '<|nope|>' is not in its vocabulary"):
        load_text_tokenizer(str(alone), special={"eos": "<|nope|>"})


def test_a_sentencepiece_model_loads_behind_the_same_interface(tokenizer_model):
    tokenizer = load_text_tokenizer(str(tokenizer_model))
    raw = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    assert tokenizer.kind == "sentencepiece" and tokenizer.vocab_size == raw.GetPieceSize()
    assert tokenizer.encode(TEXTS, add_bos=True, add_eos=True) == raw.Encode(TEXTS, add_bos=True, add_eos=True)
    assert tokenizer.decode(raw.Encode(TEXTS[0])) == TEXTS[0]
    with pytest.raises(ValueError, match="is a sentencepiece model.*unset eos_token"):
        load_text_tokenizer(str(tokenizer_model), special={"eos": "</s>"})


def test_files_that_are_no_tokenizer_are_named(tmp_path):
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": ')
    with pytest.raises(ValueError, match="starts like a tokenizer.json but is not JSON"):
        load_text_tokenizer(str(broken))
    broken.write_text(json.dumps({"version": "1.0", "model": {"type": "Nonsense"}}))
    with pytest.raises(ValueError, match="is not a tokenizer.json that tokenizers loads"):
        load_text_tokenizer(str(broken))
    garbage = tmp_path / "x.model"
    garbage.write_bytes(b"\x07garbage")
    with pytest.raises(ValueError, match="neither a sentencepiece model nor a tokenizer.json"):
        load_text_tokenizer(str(garbage))


def test_a_large_vocabulary_tokenizer_json(tmp_path):
    """70,000 tokens: more ids than uint16 holds (the Megatron dtype switch is tested with it
    in tests/jobs/test_tokenizer_json.py)."""
    vocab = {f"w{i}": i for i in range(70_000)} | {"[UNK]": 70_000, "</s>": 70_001}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = load_text_tokenizer(str(path), special={"eos": "</s>"})
    assert loaded.vocab_size == 70_002
    assert loaded.encode(["w69999 w3 nope"], add_bos=False, add_eos=True) == [[69_999, 3, 70_000, 70_001]]


def test_a_saved_truncation_or_padding_never_applies(tmp_path):
    vocab = {"a": 0, "b": 1, "[UNK]": 2, "[PAD]": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.enable_truncation(max_length=3)
    tokenizer.enable_padding(pad_id=3, pad_token="[PAD]")
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = load_text_tokenizer(str(path))
    assert loaded.encode(["a b a b a", "a"], add_bos=False, add_eos=False) == [[0, 1, 0, 1, 0], [0]]


def test_documents_that_spell_a_special_token_keep_it_as_text(bpe_json):
    tokenizer = load_text_tokenizer(str(bpe_json))
    text = "before <|endoftext|> and <|pad|> after"
    ids = tokenizer.encode([text], add_bos=False, add_eos=True)[0]
    assert ids.count(tokenizer.eos_id) == 1 and ids[-1] == tokenizer.eos_id  # only the one Refinery adds
    assert tokenizer.pad_id not in ids
    assert tokenizer.decode(ids[:-1]) == text
    # a rendered chat template's special tokens are tokens
    marked, _ = tokenizer.encode_marking([text], [[]])[0]
    assert tokenizer.eos_id in marked.tolist()


def test_the_thread_pool_is_sized_without_leaving_its_variable_to_child_processes(bpe_json):
    """RAYON_NUM_THREADS is read once, by the first parallel encode: the pool gets the
    tokenizer's threads, and the variable is gone again (a driver that loaded a tokenizer
    would otherwise hand it to every Ray worker it starts)."""
    script = f"""
import os
from pipeline.core.text_tokenizer import load_text_tokenizer
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
tokenizer = load_text_tokenizer({str(bpe_json)!r}, num_threads=3)
print(threads() - before, "RAYON_NUM_THREADS" in os.environ)
tokenizer.encode(["some text"] * 64, add_bos=False, add_eos=True, num_threads=3)
print(threads() - before)
"""
    env = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
    printed = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert printed.stdout.split() == ["3", "False", "3"]
