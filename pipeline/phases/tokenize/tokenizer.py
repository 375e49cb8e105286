"""Tokenization with a sentencepiece model (a Llama 2 ``tokenizer.model`` included) or a
Hugging Face ``tokenizer.json`` (``pipeline.core.text_tokenizer``)."""

from __future__ import annotations

import posixpath

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.chat.config import ChatTokenizeConfig
from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import NUM_TOKENS, TOKENS
from pipeline.core.text_tokenizer import load_text_tokenizer
from pipeline.phases.pack.packing import PackConfig
from pipeline.stages.base import DocumentStage, Resources, StageOutput


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    """URI of a sentencepiece model (``refinery train-tokenizer`` makes one) or of a Hugging
    Face ``tokenizer.json`` (``--format tokenizer.json`` makes one)."""
    storage_options: storage.StorageOptions = storage.StorageOptions()
    add_bos: bool = False
    add_eos: bool = True
    """Append the end-of-sequence id after every document; packing joins documents on it."""
    num_threads: int = Field(0, ge=0)
    """Encode threads per worker; 0 uses the worker's CPU allotment."""
    bos_token: str | None = None
    """For a ``tokenizer.json``: its beginning-of-text token (e.g. ``<|begin_of_text|>``);
    null reads ``bos_token`` from the ``tokenizer_config.json`` beside it, if there is one.
    A sentencepiece model names its own (leave these null)."""
    eos_token: str | None = None
    """The same for the end-of-text token that ends each document (``<|end_of_text|>``)."""
    pad_token: str | None = None
    """The same for the padding token (bestfit packing)."""
    chat: ChatTokenizeConfig | None = None
    """Chat jobs (``input.chat``): the chat template, loss mask and over-long policy. The
    template writes the special tokens, so ``add_bos`` and ``add_eos`` do not apply."""

    def settings_for_hash(self) -> dict:
        """The section as work hashes hold it: special tokens left unset stay out, as they
        were before a tokenizer.json could be named."""
        settings = self.model_dump(mode="json")
        for name in ("bos_token", "eos_token", "pad_token", "chat"):
            if settings[name] is None:
                del settings[name]
        return settings

    def special_tokens_file(self) -> str | None:
        """The tokenizer_config.json some of the special tokens come from: beside a
        tokenizer.json, when one is there and the spec leaves a token unset."""
        if all(self.special_tokens().values()) or not self.model.endswith(".json"):
            return None
        beside = posixpath.join(posixpath.dirname(self.model), "tokenizer_config.json")
        return beside if storage.exists(beside, self.storage_options) else None

    def special_tokens(self) -> dict[str, str | None]:
        return {"bos": self.bos_token, "eos": self.eos_token, "pad": self.pad_token}

    def load(self, num_threads: int = 1):
        """The tokenizer (``TextTokenizer``); ``ValueError`` saying what is wrong with it."""
        return load_text_tokenizer(self.model, self.storage_options, self.special_tokens(), num_threads)

    def check_files(self, key: str, pack: PackConfig) -> list[str]:
        """The model's problems, each starting with its key path: missing, not a tokenizer,
        without the BOS or EOS token asked for, or without the padding id ``pack`` needs."""
        if not storage.exists(self.model, self.storage_options):
            return [
                f"{key}.model: file not found: '{self.model}' (train one with `refinery train-tokenizer CORPUS OUT.model`)"
            ]
        try:
            tokenizer = self.load()
        except ValueError as exc:
            return [f"{key}.model: {exc}"]
        if self.chat is not None:
            return self._check_template(key, tokenizer)
        problems = [
            f"{key}.{flag}: the tokenizer '{self.model}' has no {role.upper()} token; set {key}.{flag}: false"
            + (f" or name it in {key}.{role}_token" if tokenizer.kind == "tokenizers" else "")
            for flag, role, token_id in (("add_eos", "eos", tokenizer.eos_id), ("add_bos", "bos", tokenizer.bos_id))
            if getattr(self, flag) and token_id < 0
        ]
        if pack.mode == "bestfit" or pack.pad_id is not None:
            try:
                pack.check_pad_id(tokenizer, self.model)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def _check_template(self, key: str, tokenizer) -> list[str]:
        """The chat template's problems: unreadable, not compiling, or writing special tokens
        the tokenizer does not have (it would split them into ordinary pieces)."""
        from pipeline.chat.config import missing_special_tokens
        from pipeline.phases.tokenize.chat import special_token_texts

        try:
            template = self.chat.load(
                special_token_texts(tokenizer, getattr(tokenizer, "special", {})), self.storage_options
            )
        except (ValueError, OSError) as exc:
            return [f"{key}.chat.template: {exc}"]
        missing = missing_special_tokens(template, tokenizer.token_id)
        if missing:
            return [
                f"{key}.chat.template: the template writes {', '.join(missing)}, which the tokenizer '{self.model}' "
                "does not have as tokens; name the tokenizer of the model the template belongs to (or add them "
                "as special tokens: `refinery train-tokenizer --format tokenizer.json` adds ChatML's)"
            ]
        return []


class Tokenize(DocumentStage):
    name = "tokenize"
    resources = Resources(num_cpus=1)

    def setup(self) -> None:
        self.num_threads = self.config.num_threads or max(1, int(self.resources.num_cpus))
        self.tokenizer = self.config.load(self.num_threads)
        self.vocab_size = self.tokenizer.vocab_size
        self.bos_id, self.eos_id, self.pad_id = self.tokenizer.bos_id, self.tokenizer.eos_id, self.tokenizer.pad_id
        if self.config.chat is not None:  # the template writes the special tokens
            return
        if self.config.add_eos and self.eos_id < 0:
            raise ValueError(f"tokenizer {self.config.model} has no EOS token; set stages.tokenize.add_eos: false")
        if self.config.add_bos and self.bos_id < 0:
            raise ValueError(f"tokenizer {self.config.model} has no BOS token; set stages.tokenize.add_bos: false")

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer.encode(texts, self.config.add_bos, self.config.add_eos, self.num_threads)

    def process(self, docs: pa.Table) -> StageOutput:
        encoded = self.encode(docs.column(cols.TEXT).to_pylist())
        tokens = pa.array(encoded, pa.list_(pa.int32()))
        lengths = pa.array([len(ids) for ids in encoded], pa.int64())
        return StageOutput(docs.append_column(TOKENS, tokens).append_column(NUM_TOKENS, lengths))
