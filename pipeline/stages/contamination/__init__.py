"""Benchmark contamination: eval items found in training documents by word n-gram overlap,
annotated, dropped or excised."""

from typing import Any

from pipeline.core.charts import Chart, bars
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.contamination.config import ContaminationConfig, EvalSetConfig
from pipeline.stages.contamination.eval_sets import EvalSetError
from pipeline.stages.contamination.index import build_index, prepare_index, words
from pipeline.stages.contamination.report import contamination_report, render_markdown
from pipeline.stages.contamination.stage import CONTAMINATION, ContaminationCheck
from pipeline.stages.registry import register

__all__ = [
    "CONTAMINATION",
    "ContaminationCheck",
    "ContaminationConfig",
    "EvalSetConfig",
    "EvalSetError",
    "build_index",
    "contamination_report",
    "prepare_index",
    "words",
]


@register
class Contamination(Capability):
    key = "contamination"
    config = ContaminationConfig
    order = 40
    document_stage = ContaminationCheck

    @classmethod
    def prepare_job(cls, spec, config: ContaminationConfig, progress) -> dict[str, Any] | None:
        """The eval sets' n-gram index, built once and written where every worker loads it."""
        return prepare_index(spec, progress)

    @classmethod
    def report_section(cls, config: ContaminationConfig, run: RunRecord) -> ReportSection:
        report = contamination_report(config, run.prepared[cls.key], run.stage_stats(cls.key))
        return ReportSection(cls.key, report, render_markdown(report), file="contamination.json")

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        found = report.get(cls.key)
        if not found or not found.get("benchmarks"):
            return []
        rows = [
            {"benchmark": name, "measure": measure, "count": b[key]}
            for name, b in sorted(found["benchmarks"].items())
            for measure, key in (("documents overlapping", "documents"), ("items found", "items_found"))
        ]
        return [
            bars(
                "contamination",
                f"Contamination by benchmark ({found['action']})",
                rows,
                "benchmark",
                "count",
                color="measure",
                caption="Documents that overlap an eval item, and the items found in the corpus.",
            )
        ]
