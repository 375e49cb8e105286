"""The tokenizer of token outputs, behind one interface: a sentencepiece model (Llama 2's
``tokenizer.model``, ``refinery train-tokenizer``'s) or a Hugging Face ``tokenizers``
``tokenizer.json`` (Llama 3, Qwen, Mistral Tekken, GPT-2 style byte-level BPE).

The file's content says which it is: a ``tokenizer.json`` is a JSON object, a sentencepiece
model a protobuf. A ``tokenizer.json`` does not say which of its tokens begin or end a
document; those come from the spec (``bos_token``, ``eos_token``, ``pad_token``) or, when
it leaves them unset, from the ``tokenizer_config.json`` beside the file, as ``transformers``
reads them. Documents are encoded without the tokenizer's own post-processor (which would
add its BOS on its own): Refinery adds BOS and EOS as the spec asks.
"""

from __future__ import annotations

import json
import os
import posixpath
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from pipeline.core import storage

SENTENCEPIECE, TOKENIZERS = "sentencepiece", "tokenizers"


class TextTokenizer(ABC):
    kind: str
    vocab_size: int
    bos_id: int
    """-1 when the tokenizer has none; so are ``eos_id`` and ``pad_id``."""
    eos_id: int
    pad_id: int

    @abstractmethod
    def encode(self, texts: list[str], add_bos: bool, add_eos: bool, num_threads: int = 1) -> list[list[int]]:
        """Token ids of each document's text, read literally: text that spells a special token
        is encoded as text."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``, special tokens included."""

    @abstractmethod
    def encode_with_offsets(self, text: str) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Token ids of one text (no BOS or EOS added) and each token's character range in
        it: ``starts`` and ``ends``. Special tokens written in the text are encoded as such."""

    def encode_batch_with_offsets(self, texts: list[str]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
        return [self.encode_with_offsets(text) for text in texts]

    def encode_marking(
        self, texts: list[str], spans: list[list[tuple[int, int]]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids of each text (as ``encode_with_offsets``) and which tokens overlap one of
        its character ``spans``. A token with no characters of its own (sentencepiece's byte
        pieces but one of a character) counts as covering the character it stands at."""
        out = []
        for text, text_spans, (ids, starts, ends) in zip(texts, spans, self.encode_batch_with_offsets(texts)):
            ends = np.maximum(ends, np.minimum(starts + 1, len(text)))
            marked = np.zeros(len(ids), bool)
            for start, end in text_spans:
                marked |= (starts < end) & (ends > start)
            out.append((np.array(ids, np.int64), marked))
        return out

    @abstractmethod
    def token_id(self, token: str) -> int | None:
        """The id of a token (a piece, or a special token), or None."""


class SentencePieceTokenizer(TextTokenizer):
    kind = SENTENCEPIECE

    def __init__(self, model: bytes) -> None:
        import sentencepiece as spm

        self.processor = spm.SentencePieceProcessor()
        self.processor.LoadFromSerializedProto(model)
        self.vocab_size = self.processor.GetPieceSize()
        self.bos_id, self.eos_id, self.pad_id = (
            self.processor.bos_id(),
            self.processor.eos_id(),
            self.processor.pad_id(),
        )

    def encode(self, texts: list[str], add_bos: bool, add_eos: bool, num_threads: int = 1) -> list[list[int]]:
        return self.processor.Encode(texts, add_bos=add_bos, add_eos=add_eos, num_threads=num_threads)

    def decode(self, ids: list[int]) -> str:
        return self.processor.DecodeIds(ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], np.ndarray, np.ndarray]:
        pieces = self.processor.encode(text, return_type="proto").pieces
        # sentencepiece gives UTF-8 byte ranges; a byte-fallback piece inside a character
        # belongs to that character
        char_of_byte = np.repeat(np.arange(len(text) + 1), [len(c.encode()) for c in text] + [1])
        begins = np.array([p.begin for p in pieces], np.int64)
        ends = np.array([p.end for p in pieces], np.int64)
        return (
            [p.id for p in pieces],
            char_of_byte[begins],
            char_of_byte[np.maximum(ends - 1, begins)] + (ends > begins),
        )

    def token_id(self, token: str) -> int | None:
        piece = self.processor.PieceToId(token)
        return piece if self.processor.IdToPiece(piece) == token else None


_pool_sized = False


def _size_thread_pool(tokenizer: Any, num_threads: int) -> None:
    """Sizes the Rust side's thread pool, which reads ``RAYON_NUM_THREADS`` once, on its first
    parallel use: set for that use only, so that the variable does not reach the processes this
    one starts (a driver that loaded a tokenizer would otherwise pin its Ray workers to it)."""
    global _pool_sized
    if _pool_sized:
        return
    previous = os.environ.get("RAYON_NUM_THREADS")
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, num_threads)))
    try:
        tokenizer.encode_batch(["", ""], add_special_tokens=False)
    finally:
        if previous is None:
            del os.environ["RAYON_NUM_THREADS"]
    _pool_sized = True


class HuggingFaceTokenizer(TextTokenizer):
    kind = TOKENIZERS

    def __init__(self, data: str, special: dict[str, str | None], num_threads: int = 1) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(data)
        _size_thread_pool(self.tokenizer, num_threads)
        # a saved tokenizer.json may carry its trainer's truncation and padding: never here
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.special = special
        ids = {}
        for role in ("bos", "eos", "pad"):
            token = special.get(role)
            found = self.tokenizer.token_to_id(token) if token else None
            if token and found is None:
                raise ValueError(f"its {role} token '{token}' is not in its vocabulary")
            ids[role] = -1 if found is None else found
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]

    def encode(self, texts: list[str], add_bos: bool, add_eos: bool, num_threads: int = 1) -> list[list[int]]:
        # a document that spells "<|endoftext|>" holds those characters, not the token: as
        # sentencepiece reads it (a rendered chat template, below, means its special tokens)
        self.tokenizer.encode_special_tokens = True
        try:
            encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        finally:
            self.tokenizer.encode_special_tokens = False
        head = [self.bos_id] if add_bos else []
        tail = [self.eos_id] if add_eos else []
        return [head + encoding.ids + tail for encoding in encodings]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def encode_with_offsets(self, text: str) -> tuple[list[int], np.ndarray, np.ndarray]:
        return self.encode_batch_with_offsets([text])[0]

    def encode_batch_with_offsets(self, texts: list[str]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
        out = []
        for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False):
            offsets = np.array(encoding.offsets, np.int64).reshape(-1, 2)
            out.append((encoding.ids, offsets[:, 0], offsets[:, 1]))
        return out

    def encode_marking(
        self, texts: list[str], spans: list[list[tuple[int, int]]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        # the tokens holding each span's first and last characters, as transformers reads
        # {% generation %} blocks: two lookups per span instead of every token's offsets
        out = []
        for text_spans, encoding in zip(spans, self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = np.array(encoding.ids, np.int64)
            marked = np.zeros(len(ids), bool)
            for start, end in text_spans:
                first = next((t for c in range(start, end) if (t := encoding.char_to_token(c)) is not None), None)
                if first is None:
                    continue
                last = next(t for c in range(end - 1, start - 1, -1) if (t := encoding.char_to_token(c)) is not None)
                marked[first : last + 1] = True
            out.append((ids, marked))
        return out

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)


def _token_text(value: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def special_tokens_beside(uri: str, options: storage.StorageOptions | None) -> dict[str, str | None]:
    """bos, eos and pad tokens from the ``tokenizer_config.json`` beside a ``tokenizer.json``
    (none where there is no such file)."""
    config_uri = posixpath.join(posixpath.dirname(uri), "tokenizer_config.json")
    if not storage.exists(config_uri, options):
        return {"bos": None, "eos": None, "pad": None}
    try:
        config = json.loads(storage.read_bytes(config_uri, options))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"'{config_uri}' is not JSON: {exc}") from None
    return {role: _token_text(config.get(f"{role}_token")) for role in ("bos", "eos", "pad")}


def load_text_tokenizer(
    uri: str,
    options: storage.StorageOptions | None = None,
    special: dict[str, str | None] | None = None,
    num_threads: int = 1,
) -> TextTokenizer:
    """The tokenizer in the file at ``uri``; ``special`` overrides a ``tokenizer.json``'s bos,
    eos and pad tokens role by role. ``ValueError`` saying what is wrong with the file."""
    data = storage.read_bytes(uri, options)
    if data.lstrip()[:1] == b"{":
        try:
            text = data.decode("utf-8")
            json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"'{uri}' starts like a tokenizer.json but is not JSON: {exc}") from None
        chosen = special_tokens_beside(uri, options)
        chosen |= {role: token for role, token in (special or {}).items() if token is not None}
        try:
            return HuggingFaceTokenizer(text, chosen, num_threads)
        except Exception as exc:  # the Rust side raises its own exception types
            if isinstance(exc, ValueError) and str(exc).startswith("its "):
                raise ValueError(f"'{uri}': {exc}") from None
            raise ValueError(f"'{uri}' is not a tokenizer.json that tokenizers loads ({exc})") from None
    if special and any(special.values()):
        given = ", ".join(f"{role}_token" for role, token in special.items() if token)
        raise ValueError(f"'{uri}' is a sentencepiece model, whose pieces say which are special; unset {given}")
    try:
        return SentencePieceTokenizer(data)
    except (RuntimeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"'{uri}' is neither a sentencepiece model nor a tokenizer.json ({detail})") from None
