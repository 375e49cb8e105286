"""Which stages a job runs, in order, from its spec. A stage may have an annotate part
(a document stage), a dedup-phase part (a global stage), or both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.stages.base import DocumentStage, GlobalStage
from pipeline.stages.contamination import ContaminationCheck
from pipeline.stages.exact_dedup import ExactDedupKeys, ExactDuplicates
from pipeline.stages.language import LanguageId
from pipeline.stages.near_dedup import MinHashSignatures, NearDuplicates
from pipeline.stages.perplexity import Perplexity, PerplexityBuckets
from pipeline.stages.pii import PiiScrub
from pipeline.stages.quality_rules import QualityRules

if TYPE_CHECKING:
    from pipeline.config import JobSpec

# (key under `stages:` in the spec, document stage, global stage); global stages keep
# this order as their precedence: a document found by several is counted by the first.
STAGES: list[tuple[str, type[DocumentStage] | None, type[GlobalStage] | None]] = [
    ("language", LanguageId, None),
    ("quality", QualityRules, None),
    ("perplexity", Perplexity, PerplexityBuckets),
    ("contamination", ContaminationCheck, None),
    ("pii", PiiScrub, None),
    ("exact_dedup", ExactDedupKeys, ExactDuplicates),
    ("near_dedup", MinHashSignatures, NearDuplicates),
]


def _enabled(spec: "JobSpec"):
    for key, document_stage, global_stage in STAGES:
        config = getattr(spec.stages, key)
        if config.enabled:
            yield config, document_stage, global_stage


def document_stages(spec: "JobSpec") -> list[DocumentStage]:
    stages = [document(config) for config, document, _ in _enabled(spec) if document]
    for stage in stages:
        if hasattr(stage, "bind_job"):
            stage.bind_job(spec)
    return stages


def global_stages(spec: "JobSpec") -> list[GlobalStage]:
    return [global_(config) for config, _, global_ in _enabled(spec) if global_]
