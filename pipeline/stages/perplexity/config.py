"""The perplexity stage's section of the job spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core import storage
from pipeline.core.model_files import check_kenlm, check_sentencepiece
from pipeline.stages.base import ModelFiles, StageConfig


class LanguageModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lm: str
    """KenLM model URI: ARPA or KenLM binary (CCNet's ``{lang}.arpa.bin``)."""
    sp: str
    """The sentencepiece model the LM's training text was tokenized with (``{lang}.sp.model``)."""


class PerplexityConfig(StageConfig):
    enabled: bool = False
    models: dict[str, LanguageModel] = {}
    """Language label (as the language stage writes it) -> model pair."""
    storage_options: storage.StorageOptions = storage.StorageOptions()
    per_line: bool = True
    """Score each line (CCNet's DocLM); false scores the document as one line, which is
    what CCNet's published pipeline effectively did."""
    max_perplexity: float | None = Field(None, gt=0)
    """Reject documents above this perplexity (reason ``perplexity_above_max``)."""
    bucket_percentiles: tuple[float, float] = (30.0, 60.0)
    """Per language, the run's perplexity percentiles that split head | middle | tail
    (CCNet's 30 and 60)."""
    keep_buckets: list[Literal["head", "middle", "tail"]] = ["head", "middle", "tail"]
    """Buckets kept; the others are rejected as ``perplexity_<bucket>``. CCNet-style
    training sets keep head and middle."""
    relative_accuracy: float = Field(0.001, gt=0, le=0.05)
    """Of the percentile sketch: a cut point is within this fraction of the true
    percentile's value."""

    @model_validator(mode="after")
    def _percentiles_in_order(self) -> PerplexityConfig:
        low, high = self.bucket_percentiles
        if not 0 < low < high < 100:
            raise ValueError("bucket_percentiles must be two increasing percentiles between 0 and 100")
        return self

    def model_files(self, key: str) -> ModelFiles:
        return {
            f"{key}.models.{lang}.{part}": (getattr(pair, part), self.storage_options)
            for lang, pair in self.models.items()
            for part in ("lm", "sp")
        }

    def open_file(self, path: str, uri: str, options: storage.StorageOptions) -> None:
        if path.endswith(".lm"):
            check_kenlm(uri, options)
        else:
            check_sentencepiece(uri, options)

    def missing_file_hint(self, path: str) -> str:
        return " (`refinery train-lm` makes both)"

    def check_job(self, stages, key: str) -> None:
        if not self.models:
            raise ValueError(f"{key}.models: name at least one language's lm and sp model")
        if not stages.language.enabled:
            raise ValueError(f"{key} needs stages.language enabled: models are chosen by language")
