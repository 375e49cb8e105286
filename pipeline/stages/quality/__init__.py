"""Heuristic quality rules from Gopher, C4 and FineWeb (``docs/quality-rules.md``)."""

from pipeline.stages.base import Capability
from pipeline.stages.quality.c4 import C4_REASONS
from pipeline.stages.quality.config import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    QualityRulesConfig,
)
from pipeline.stages.quality.fineweb import FINEWEB_REASONS
from pipeline.stages.quality.gopher import (
    DUP_NGRAMS,
    GOPHER_QUALITY_REASONS,
    GOPHER_REPETITION_REASONS,
    TOP_NGRAMS,
)
from pipeline.stages.quality.stage import REJECT_REASONS, QualityRules, reject_reasons
from pipeline.stages.registry import register

__all__ = [
    "C4_REASONS",
    "DUP_NGRAMS",
    "FINEWEB_REASONS",
    "GOPHER_QUALITY_REASONS",
    "GOPHER_REPETITION_REASONS",
    "REJECT_REASONS",
    "TOP_NGRAMS",
    "C4Config",
    "FineWebConfig",
    "GopherQualityConfig",
    "GopherRepetitionConfig",
    "QualityRules",
    "QualityRulesConfig",
    "reject_reasons",
]


@register
class Quality(Capability):
    key = "quality"
    config = QualityRulesConfig
    order = 20
    document_stage = QualityRules
