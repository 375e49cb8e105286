"""PII scrubbing with Presidio's recognizers, exact and at corpus throughput."""

from pipeline.core.charts import Chart, bars
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.pii.config import DEFAULT_ENTITIES, PiiConfig
from pipeline.stages.pii.stage import PII_COUNTS, PiiScrub, Span, merge_spans
from pipeline.stages.registry import register

__all__ = ["DEFAULT_ENTITIES", "PII_COUNTS", "PiiConfig", "PiiScrub", "Span", "merge_spans"]


@register
class Pii(Capability):
    key = "pii"
    config = PiiConfig
    order = 50
    document_stage = PiiScrub

    @classmethod
    def report_section(cls, config: PiiConfig, run: RunRecord) -> ReportSection:
        replaced = dict(sorted(run.kept_counts(cls.key).items()))
        lines = []
        if replaced:
            lines += ["## PII replaced (spans, in documents kept by annotate)", "", "| entity | spans |", "|---|---:|"]
            lines += [f"| {entity} | {n:,} |" for entity, n in replaced.items()]
        return ReportSection("pii_replaced", replaced, lines)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        replaced = report.get("pii_replaced")
        if not replaced:
            return []
        rows = [{"entity": e, "spans": n} for e, n in sorted(replaced.items(), key=lambda kv: (-kv[1], kv[0]))]
        return [bars("pii", "PII replaced, by entity (spans in documents annotate kept)", rows, "entity", "spans")]
