"""``refinery train-tokenizer``: a sentencepiece model trained on a sample of a corpus.

Trained with identity normalization, byte fallback and whitespace kept as is, so that
decoding the tokens of a document gives back exactly its text.
"""

from __future__ import annotations

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


def train_tokenizer(
    corpus_uri: str,
    out_uri: str,
    vocab_size: int = 8000,
    text_column: str = "text",
    max_documents: int = 20000,
    seed: int = 0,
    model_type: str = "bpe",
    options: storage.StorageOptions | None = None,
) -> dict:
    texts = sample_texts(corpus_uri, text_column, max_documents, seed, options)
    model = train_sentencepiece((line for text in texts for line in text.splitlines()), vocab_size, seed, model_type)
    storage.write_bytes(out_uri, model, options)
    return {"model": out_uri, "vocab_size": vocab_size, "documents": len(texts)}
