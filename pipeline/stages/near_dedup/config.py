"""The near dedup stage's section of the job spec."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipeline.stages.base import StageConfig


class NearDedupConfig(StageConfig):
    ADDED_LATER: ClassVar[dict[str, Any]] = {"transitive": True}
    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    """Jaccard similarity of shingle sets above which two documents are duplicates."""
    num_perm: int = Field(128, ge=8, le=1024)
    ngram: int = Field(5, ge=1, le=64)
    shingle_unit: Literal["word", "char"] = "word"
    seed: int = 1
    bands: int | None = Field(None, ge=1)
    """LSH bands; with ``rows`` overrides the optimum datasketch computes for the threshold."""
    rows: int | None = Field(None, ge=1)
    false_positive_weight: float = Field(0.1, ge=0.0, le=1.0)
    false_negative_weight: float = Field(0.9, ge=0.0, le=1.0)
    """Weights for datasketch's choice of bands and rows. The defaults favour recall (14 x 9
    at 0.8: P(candidate) 0.87 at 0.8, 0.98 at 0.85) and rely on ``verify`` for precision."""
    verify: Literal["none", "signature", "shingles"] = "shingles"
    """Check each candidate edge before it counts. ``signature``: the two signatures agree on
    at least ``threshold`` of their values (estimated Jaccard); annotate then stores each
    signature. ``shingles``: the true Jaccard similarity of the two shingle-hash sets reaches
    ``threshold``; annotate then stores each document's shingle hashes. Either column is
    read only for the documents in a candidate edge."""
    survivor: Literal["first", "longest", "lowest_perplexity"] = "first"
    """Which document of a duplicate cluster is kept: ``first`` by (shard, row), the
    ``longest`` in normalized words, or the one with the ``lowest_perplexity`` (needs the
    perplexity stage; documents without a perplexity rank last). Ties go to the first."""
    transitive: bool = True
    """``true``: every document of a connected component of verified matches except its
    survivor is removed, so chains count: with A~B and B~C at or above ``threshold``, C goes
    for A even when A and C are below it (C's ``matched_to`` is then B). ``false`` drops
    chains: a document is removed only when its similarity to the survivor itself reaches
    ``threshold`` (checked by ``verify``, which must not be ``none``); the other members are
    kept, though they may still be near duplicates of each other. The removals are then a
    subset of the transitive ones, each matched to its survivor directly."""

    @model_validator(mode="after")
    def _bands_and_rows(self) -> NearDedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if not self.transitive and self.verify == "none":
            raise ValueError(
                "transitive: false compares each document with its survivor: set verify to signature or shingles"
            )
        return self

    def banding(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        from datasketch.lsh import _optimal_param  # datasketch loads scipy: not for every spec load

        return _optimal_param(self.threshold, self.num_perm, self.false_positive_weight, self.false_negative_weight)

    def s_curve(self) -> dict[str, float]:
        """Probability that a pair with the given Jaccard similarity becomes a candidate."""
        bands, rows = self.banding()
        return {f"{s:.1f}": round(1 - (1 - s**rows) ** bands, 6) for s in (0.5, 0.7, 0.8, 0.9)}

    def check_job(self, stages, key: str) -> None:
        if self.survivor == "lowest_perplexity" and not stages.perplexity.enabled:
            raise ValueError(f"{key}.survivor: lowest_perplexity needs stages.perplexity enabled")
