"""Tokenization with any sentencepiece model (a Llama-style ``tokenizer.model`` included)."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.core.columns import NUM_TOKENS, TOKENS
from pipeline.core.model_files import check_sentencepiece
from pipeline.core.sentencepiece import load_sentencepiece
from pipeline.phases.pack.packing import PackConfig
from pipeline.stages.base import DocumentStage, Resources, StageOutput


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    """URI of a sentencepiece model file (``refinery train-tokenizer`` makes one)."""
    storage_options: storage.StorageOptions = storage.StorageOptions()
    add_bos: bool = False
    add_eos: bool = True
    """Append the end-of-sequence id after every document; packing joins documents on it."""
    num_threads: int = Field(0, ge=0)
    """sentencepiece encode threads per worker; 0 uses the worker's CPU allotment."""

    def check_files(self, key: str, pack: PackConfig) -> list[str]:
        """The model's problems, each starting with its key path: missing, not a
        sentencepiece model, without the BOS or EOS piece asked for, or without the padding
        id ``pack`` needs."""
        if not storage.exists(self.model, self.storage_options):
            return [
                f"{key}.model: file not found: '{self.model}' (train one with `refinery train-tokenizer CORPUS OUT.model`)"
            ]
        try:
            processor = check_sentencepiece(self.model, self.storage_options)
        except ValueError as exc:
            return [f"{key}.model: {exc}"]
        problems = [
            f"{key}.{flag}: the tokenizer '{self.model}' has no {piece} piece; set {key}.{flag}: false"
            for flag, piece, piece_id in (
                ("add_eos", "EOS", processor.eos_id()),
                ("add_bos", "BOS", processor.bos_id()),
            )
            if getattr(self, flag) and piece_id < 0
        ]
        if pack.mode == "bestfit" or pack.pad_id is not None:
            try:
                pack.check_pad_id(processor, self.model)
            except ValueError as exc:
                problems.append(str(exc))
        return problems


class Tokenize(DocumentStage):
    name = "tokenize"
    resources = Resources(num_cpus=1)

    def setup(self) -> None:
        self.processor = load_sentencepiece(self.config.model, self.config.storage_options)
        self.vocab_size = self.processor.GetPieceSize()
        self.bos_id = self.processor.bos_id()
        self.eos_id = self.processor.eos_id()
        self.pad_id = self.processor.pad_id()
        if self.config.add_eos and self.eos_id < 0:
            raise ValueError(f"tokenizer {self.config.model} has no EOS piece; set stages.tokenize.add_eos: false")
        if self.config.add_bos and self.bos_id < 0:
            raise ValueError(f"tokenizer {self.config.model} has no BOS piece; set stages.tokenize.add_bos: false")
        self.num_threads = self.config.num_threads or max(1, int(self.resources.num_cpus))

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.processor.Encode(
            texts, add_bos=self.config.add_bos, add_eos=self.config.add_eos, num_threads=self.num_threads
        )

    def process(self, docs: pa.Table) -> StageOutput:
        encoded = self.encode(docs.column(cols.TEXT).to_pylist())
        tokens = pa.array(encoded, pa.list_(pa.int32()))
        lengths = pa.array([len(ids) for ids in encoded], pa.int64())
        return StageOutput(docs.append_column(TOKENS, tokens).append_column(NUM_TOKENS, lengths))
