"""Perplexity under per-language KenLM models (CCNet), and head/middle/tail buckets at
percentiles of the whole run."""

from pipeline.core.columns import PERPLEXITY
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.perplexity.buckets import PerplexityBuckets
from pipeline.stages.perplexity.config import PerplexityConfig
from pipeline.stages.perplexity.normalize import ccnet_normalize, normalize_lines
from pipeline.stages.perplexity.stage import Perplexity
from pipeline.stages.registry import register

__all__ = ["PERPLEXITY", "Perplexity", "PerplexityBuckets", "PerplexityConfig", "ccnet_normalize", "normalize_lines"]


@register
class PerplexityCapability(Capability):
    key = "perplexity"
    config = PerplexityConfig
    order = 30
    document_stage = Perplexity
    global_stage = PerplexityBuckets

    @classmethod
    def report_section(cls, config: PerplexityConfig, run: RunRecord) -> ReportSection:
        buckets = run.dedup.stage_state.get(cls.key)
        lines = []
        if buckets:
            low, high = buckets["percentiles"]
            lines += [
                "## Perplexity buckets",
                "",
                f"Cut points per language at the {low:g}th and {high:g}th percentiles of perplexity "
                "(log-bucket sketch, 0.1% relative accuracy); "
                "cut points found by an earlier run on this output are kept.",
                "",
                "| language | head: below | tail: from |",
                "|---|---:|---:|",
            ]
            lines += [f"| {lang} | {a:,.1f} | {b:,.1f} |" for lang, (a, b) in buckets["cutoffs"].items()]
        return ReportSection("perplexity_buckets", buckets, lines)
