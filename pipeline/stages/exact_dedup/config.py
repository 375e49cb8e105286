"""The exact dedup stage's section of the job spec."""

from __future__ import annotations

from pipeline.stages.base import StageConfig


class ExactDedupConfig(StageConfig):
    enabled: bool = True
    unicode_nfkc: bool = True
    lowercase: bool = True
    collapse_whitespace: bool = True
    strip_punctuation: bool = False
