"""The contamination stage's section of the job spec: the eval sets and the overlap rule."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core import storage
from pipeline.stages.base import ModelFiles, StageConfig

# Fields whose text counts, for common eval set shapes.
PRESETS: dict[str, list[str]] = {
    "gsm8k": ["question", "answer"],
    "humaneval": ["prompt", "canonical_solution"],
    "mbpp": ["text", "code"],
    "mmlu": ["question", "choices"],
    "hellaswag": ["ctx", "endings"],
    "arc": ["question", "choices"],
    "truthfulqa": ["question", "best_answer"],
    "triviaqa": ["question", "answer"],
    "squad": ["context", "question"],
}


class EvalSetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    uri: str
    """Local path or s3:// URI of the eval set: JSONL, JSONL.gz, Parquet or CSV."""
    fields: list[str] | None = None
    """The fields whose text counts (lists of strings are joined); default: the preset's."""
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]
    """A known shape: gsm8k (question, answer), humaneval (prompt, canonical_solution), mbpp,
    mmlu, hellaswag, arc, truthfulqa, triviaqa, squad."""
    storage_options: storage.StorageOptions = storage.StorageOptions()

    @model_validator(mode="after")
    def _fields_known(self) -> EvalSetConfig:
        if not self.fields and not self.preset:
            raise ValueError(f"benchmark '{self.name}': name its text fields or a preset ({', '.join(PRESETS)})")
        return self

    def text_fields(self) -> list[str]:
        return self.fields or PRESETS[self.preset]


class ContaminationConfig(StageConfig):
    ADDED_LATER: ClassVar[dict[str, Any]] = {"min_informative_words": 0, "max_items_per_ngram": None}
    enabled: bool = False
    benchmarks: list[EvalSetConfig] = []
    ngram: int = Field(13, ge=3, le=64)
    """Words per n-gram (13 as in GPT-3)."""
    min_matching_ngrams: int = Field(1, ge=1)
    """Distinct n-grams of an item a document must contain to overlap it."""
    min_item_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of an item's n-grams a document must contain to overlap it."""
    min_informative_words: int = Field(2, ge=0)
    """Words of an n-gram that must be informative for the n-gram to count: not a number,
    and two characters or more (a CJK character is a word by itself). A run of numbers or
    single letters (``1 2 3 … 13``, the Fibonacci numbers, a table row, list markers, ``a, b,
    c``) is in clean text as often as in eval items. An item with no n-gram that counts is
    matched whole (a document must hold all its n-grams), as an item shorter than
    ``ngram`` words is. 0: every n-gram counts."""
    max_items_per_ngram: int | None = Field(50, ge=1)
    """An n-gram found in more eval items than this is the benchmarks' template (shared
    instructions, a few-shot prompt), not an item's text, and does not count; ``null``:
    no limit."""
    action: Literal["annotate", "drop", "excise"] = "annotate"
    """``annotate``: only the ``contamination`` column; ``drop``: reject overlapping
    documents; ``excise``: cut each matched region with ``margin_chars`` on both sides, and
    reject the document if that leaves more than ``max_pieces`` pieces (GPT-3's recipe)."""
    margin_chars: int = Field(200, ge=0)
    max_pieces: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _benchmarks_named(self) -> ContaminationConfig:
        if self.enabled and not self.benchmarks:
            raise ValueError("stages.contamination.benchmarks: name at least one eval set")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("stages.contamination.benchmarks: names must be unique")
        return self

    def model_files(self, key: str) -> ModelFiles:
        return {f"{key}.benchmarks.{b.name}": (b.uri, b.storage_options) for b in self.benchmarks}

    def check_files(self, key: str) -> list[str]:
        from pipeline.stages.contamination.eval_sets import iter_eval_set

        problems = []
        for number, eval_set in enumerate(self.benchmarks):
            path = f"{key}.benchmarks.{number}.uri ('{eval_set.name}')"
            if not storage.exists(eval_set.uri, eval_set.storage_options):
                problems.append(f"{path}: file not found: '{eval_set.uri}'")
                continue
            try:  # the format, and the text fields in the first item
                next(iter_eval_set(eval_set))
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
        return problems
