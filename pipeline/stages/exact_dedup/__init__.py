"""Exact deduplication: a hash of normalized text per document, one survivor per hash."""

from pipeline.stages.base import Capability
from pipeline.stages.exact_dedup.config import ExactDedupConfig
from pipeline.stages.exact_dedup.stage import EXACT_HASH, ExactDedupKeys, ExactDuplicates, duplicates_in_block
from pipeline.stages.registry import register

__all__ = ["EXACT_HASH", "ExactDedupConfig", "ExactDedupKeys", "ExactDuplicates", "duplicates_in_block"]


@register
class ExactDedup(Capability):
    key = "exact_dedup"
    config = ExactDedupConfig
    order = 60
    document_stage = ExactDedupKeys
    global_stage = ExactDuplicates
