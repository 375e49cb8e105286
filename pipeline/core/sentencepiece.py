"""Loading sentencepiece models from any store (the tokenizer, and CCNet's perplexity models)."""

from __future__ import annotations

import sentencepiece as spm

from pipeline.core import storage


def load_sentencepiece(uri: str, options: storage.StorageOptions | None = None) -> spm.SentencePieceProcessor:
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(storage.read_bytes(uri, options))
    return processor
