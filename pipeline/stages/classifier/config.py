"""The classifier stage's section of the job spec: any number of named fastText classifiers."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core import storage
from pipeline.core.model_files import fasttext_labels
from pipeline.stages.base import ModelFiles, StageConfig

LABEL_PREFIX = "__label__"
Output = Literal["score", "top_label", "all_labels"]


class TextPreparation(BaseModel):
    """How a document's text becomes the one line fastText reads. Use what the model's
    training text went through (``refinery train-classifier`` uses these same options)."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int | None = Field(None, gt=0)
    """Read only this many leading characters (first, before the steps below); null: the
    whole text, as DCLM, FineWeb-Edu and dolma score it."""
    newlines: Literal["space", "join_lines"] = "space"
    """``space``: each line break becomes a space (datatrove's and dolma's fastText taggers);
    ``join_lines``: the text is stripped, split into lines (Python's ``splitlines``) and the
    lines joined by one space (DCLM's ``" ".join(text.strip().splitlines())``)."""
    lowercase: bool = False
    """Lower-case the text (Python's ``str.lower``) after the steps above."""


class DomainRoute(BaseModel):
    """The classifier's top label decides the document's domain for the mix phase."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(min_length=1)
    """Model label (with or without ``__label__``) -> domain, e.g. ``{__label__code: code}``."""
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    """The top label's probability must be at least this; below, no domain is routed."""


class ClassifierEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]+$", max_length=40)
    """Names the columns (``classifier_<name>``, ...) and the reject reasons."""
    model: str
    """URI of a fastText supervised model (``.bin`` or quantized ``.ftz``; local or ``s3://``),
    loaded unchanged: DCLM's, dolma's Jigsaw models, one from ``refinery train-classifier``."""
    label: str | None = None
    """The label whose probability is the document's score (``__label__hq``; the prefix may
    be left out). Needed for ``score`` and for every decision."""
    outputs: list[Output] | None = None
    """Columns written: ``score`` -> ``classifier_<name>`` (probability of ``label``);
    ``top_label`` -> ``classifier_<name>_label`` (without ``__label__``) and
    ``classifier_<name>_label_score``; ``all_labels`` -> ``classifier_<name>_labels`` (label ->
    probability). Null: ``[score]`` with a ``label``, else ``[top_label]``."""
    prepare: TextPreparation = TextPreparation()
    languages: list[str] = []
    """Score only documents whose ``lang`` is one of these (needs stages.language); the others
    get no score and are not rejected here. Empty: every document."""
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    """Reject documents scoring below this (reason ``classifier_<name>_below``)."""
    max_score: float | None = Field(None, ge=0.0, le=1.0)
    """Reject documents scoring above this (reason ``classifier_<name>_above``), e.g. for a
    toxicity model's ``__label__toxic``."""
    min_percentile: float | None = Field(None, gt=0.0, lt=100.0)
    """Reject documents below this percentile of the whole run's scores (90 keeps the top
    10%; reason ``classifier_<name>_below``). Cut points come from a mergeable sketch and are
    kept for later runs on the same output, so a refresh cuts new documents at the same score."""
    max_percentile: float | None = Field(None, gt=0.0, lt=100.0)
    """Reject documents above this percentile of the run's scores (``classifier_<name>_above``)."""
    route: DomainRoute | None = None

    @model_validator(mode="after")
    def _decisions_consistent(self) -> ClassifierEntry:
        if self.min_score is not None and self.min_percentile is not None:
            raise ValueError("give min_score or min_percentile, not both")
        if self.max_score is not None and self.max_percentile is not None:
            raise ValueError("give max_score or max_percentile, not both")
        if self.min_percentile is not None and self.max_percentile is not None:
            if self.min_percentile >= self.max_percentile:
                raise ValueError("min_percentile must be below max_percentile")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ValueError("min_score must be at most max_score")
        if self.decides and self.label is None:
            raise ValueError(
                "a decision (min/max score or percentile) needs label: the label whose probability is scored"
            )
        if "score" in self.columns_written and self.label is None:
            raise ValueError("outputs has score, which needs label")
        if self.uses_percentiles and "score" not in self.columns_written:
            raise ValueError("a percentile cut reads the score column: add score to outputs")
        return self

    @property
    def decides(self) -> bool:
        return any(v is not None for v in (self.min_score, self.max_score, self.min_percentile, self.max_percentile))

    @property
    def uses_percentiles(self) -> bool:
        return self.min_percentile is not None or self.max_percentile is not None

    @property
    def columns_written(self) -> list[Output]:
        if self.outputs is not None:
            return list(self.outputs)
        return ["score"] if self.label is not None else ["top_label"]

    @property
    def score_column(self) -> str:
        return f"classifier_{self.name}"

    def named_labels(self) -> list[str]:
        """Every label the entry names: ``label`` and the route's."""
        return ([self.label] if self.label else []) + (list(self.route.labels) if self.route else [])


def resolve_label(label: str, model_labels: list[str]) -> str:
    """The model's own spelling of ``label`` (``hq`` -> ``__label__hq``); ``ValueError`` naming
    the model's labels if it has no such label."""
    for candidate in (label, LABEL_PREFIX + label):
        if candidate in model_labels:
            return candidate
    shown = ", ".join(model_labels[:20]) + (f", ... ({len(model_labels)} in all)" if len(model_labels) > 20 else "")
    raise ValueError(f"the model has no label '{label}'; its labels: {shown}")


class ClassifierConfig(StageConfig):
    enabled: bool = False
    classifiers: list[ClassifierEntry] = []
    storage_options: storage.StorageOptions = storage.StorageOptions()
    """For ``s3://`` models."""
    relative_accuracy: float = Field(0.001, gt=0, le=0.05)
    """Of the percentile sketch, over the odds p / (1 - p) of the scores: a cut point's odds
    are within this fraction of the true percentile's."""

    @field_validator("classifiers")
    @classmethod
    def _names_unique(cls, value: list[ClassifierEntry]) -> list[ClassifierEntry]:
        names = [entry.name for entry in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"classifier names must be unique; repeated: {', '.join(repeated)}")
        return value

    def model_files(self, key: str) -> ModelFiles:
        return {
            f"{key}.classifiers.{i}.model": (entry.model, self.storage_options)
            for i, entry in enumerate(self.classifiers)
        }

    def open_file(self, path: str, uri: str, options: storage.StorageOptions) -> None:
        """A fastText model that has every label the entry names."""
        entry = self.classifiers[int(re.search(r"\.classifiers\.(\d+)\.model$", path).group(1))]
        labels = fasttext_labels(uri, options)
        for label in entry.named_labels():
            resolve_label(label, labels)

    def missing_file_hint(self, path: str) -> str:
        return " (`refinery train-classifier` trains one)"

    def check_job(self, stages, key: str) -> None:
        if not self.classifiers:
            raise ValueError(f"{key}.classifiers: name at least one classifier (name, model)")
        weights = stages.mix.weights
        for i, entry in enumerate(self.classifiers):
            if entry.languages and not stages.language.enabled:
                raise ValueError(f"{key}.classifiers.{i}.languages needs stages.language enabled")
            if entry.route is None or not weights:
                continue
            for label, domain in entry.route.labels.items():
                if domain not in weights:
                    raise ValueError(
                        f"{key}.classifiers.{i}.route.labels.{label}: domain '{domain}' has no weight in "
                        f"stages.mix.weights (domains: {', '.join(sorted(weights))}); add it (0 drops it)"
                    )
