"""``refinery train-tokenizer``: a tokenizer trained on a sample of a corpus, either a
sentencepiece model or a Hugging Face ``tokenizer.json`` (byte-level BPE, as GPT-2, Llama 3
and Qwen use).

Both decode the tokens of a document back to exactly its text: the sentencepiece model is
trained with identity normalization, byte fallback and whitespace kept as is; the byte-level
BPE has no normalizer and covers every byte. The ``tokenizer.json`` gets special tokens for
document ends, padding and ChatML turns, and a ``tokenizer_config.json`` beside it naming
its EOS and pad tokens, as ``transformers`` writes one.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterable

import sentencepiece as spm

from pipeline.core import storage


class CorpusError(ValueError):
    """A file of the training corpus cannot be read; the message names it."""


def sample_texts(
    corpus_uri: str,
    text_column: str = "text",
    max_documents: int = 20000,
    seed: int = 0,
    options: storage.StorageOptions | None = None,
) -> list[str]:
    """Up to ``max_documents`` non-blank texts of a corpus, chosen at random by seed. The
    corpus is read as ``refinery run`` reads its input: Parquet or JSON lines (plain, gzip,
    zstd) by content, ``text_column`` a column or a dotted path into nested JSON."""
    from pipeline.phases.annotate.readers import open_source
    from pipeline.phases.annotate.validation import InputConfig, InputValidation, ShardRejected

    shards = storage.list_files(corpus_uri, options)
    if not shards:
        raise FileNotFoundError(f"no input files found at '{corpus_uri}'")
    config = InputConfig(uri=corpus_uri, text_column=text_column, domain_column=None, url_column=None)
    validation = InputValidation(config)
    texts: list[str] = []
    for uri in shards:
        try:
            with open_source(uri, "sample", options, validation, 8192) as source:
                for batch in source.batches():
                    texts.extend(t for t in batch.raw.column(text_column).to_pylist() if t and t.strip())
        except ShardRejected as problem:
            raise CorpusError(f"{uri}: {problem}") from None
    random.Random(seed).shuffle(texts)
    return texts[:max_documents]


def train_sentencepiece(lines: Iterable[str], vocab_size: int, seed: int = 0, model_type: str = "bpe") -> bytes:
    """A serialized sentencepiece model trained on ``lines`` (one sentence each)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            for line in lines:
                if line.strip():
                    f.write(line[:4096] + "\n")
        prefix = os.path.join(tmp, "tokenizer")
        spm.set_random_generator_seed(seed)
        spm.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=0.9995,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            num_threads=os.cpu_count() or 1,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            minloglevel=2,
        )
        with open(prefix + ".model", "rb") as f:
            return f.read()


BPE_SPECIAL_TOKENS = {"eos": "<|endoftext|>", "pad": "<|pad|>"}
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")


def train_byte_level_bpe(texts: list[str], vocab_size: int) -> str:
    """A byte-level BPE ``tokenizer.json`` (its text) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    special = [BPE_SPECIAL_TOKENS["eos"], BPE_SPECIAL_TOKENS["pad"], *CHATML_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer.to_str()


def train_tokenizer(
    corpus_uri: str,
    out_uri: str,
    vocab_size: int = 8000,
    text_column: str = "text",
    max_documents: int = 20000,
    seed: int = 0,
    model_type: str = "bpe",
    options: storage.StorageOptions | None = None,
    tokenizer_format: str = "sentencepiece",
) -> dict:
    texts = sample_texts(corpus_uri, text_column, max_documents, seed, options)
    if tokenizer_format == "tokenizer.json":
        storage.write_bytes(out_uri, train_byte_level_bpe(texts, vocab_size).encode(), options)
        config = {
            "bos_token": None,
            "eos_token": BPE_SPECIAL_TOKENS["eos"],
            "pad_token": BPE_SPECIAL_TOKENS["pad"],
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
        config_uri = out_uri.rsplit("/", 1)[0] + "/tokenizer_config.json" if "/" in out_uri else "tokenizer_config.json"
        storage.write_bytes(config_uri, (json.dumps(config, indent=2) + "\n").encode(), options)
        return {"model": out_uri, "vocab_size": vocab_size, "documents": len(texts), "config": config_uri}
    model = train_sentencepiece((line for text in texts for line in text.splitlines()), vocab_size, seed, model_type)
    storage.write_bytes(out_uri, model, options)
    return {"model": out_uri, "vocab_size": vocab_size, "documents": len(texts)}
