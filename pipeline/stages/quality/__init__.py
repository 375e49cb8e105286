"""Heuristic quality rules from Gopher, C4 and FineWeb (``docs/quality-rules.md``)."""

from typing import Any

from pipeline.core import sketch
from pipeline.core.charts import Chart, histograms
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
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
from pipeline.stages.quality.stage import REJECT_REASONS, VALUE_GAMMA, QualityRules, reject_reasons
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

    @classmethod
    def report_section(cls, config: QualityRulesConfig, run: RunRecord) -> ReportSection | None:
        parts: dict[str, list[dict[str, Any]]] = {}
        for stats in run.stage_stats(QualityRules.name):
            for rule, counts in stats.items():
                parts.setdefault(rule, []).append(counts)
        if not parts:
            return None
        data = {}
        for rule in [r for r in REJECT_REASONS if r in parts]:
            zero = sum(p["zero"] for p in parts[rule])
            buckets = sketch.merged_counts([p["buckets"] for p in parts[rule]])
            distribution = ([[0.0, zero]] if zero else []) + [
                [round(sketch.bucket_value(b, VALUE_GAMMA), 4), n] for b, n in buckets.items()
            ]
            data[rule] = {
                "documents": sum(n for _, n in distribution),
                "percentiles": dict(zip(("p10", "p50", "p90"), sketch.values_at(distribution, (10, 50, 90)))),
                "thresholds": _thresholds(config, rule),
                "distribution": distribution,
            }
        lines = [
            "## Quality rules: the values they compared",
            "",
            "Every document a rule looked at (each family sees what the families before it kept); "
            "values from 10%-wide buckets.",
            "",
            "| rule | documents | p10 | median | p90 | threshold |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for rule, d in data.items():
            p = d["percentiles"]
            limits = ", ".join(f"{t:g}" for t in d["thresholds"]) or "-"
            lines.append(
                f"| {rule} | {d['documents']:,} | {p['p10']:.3g} | {p['p50']:.3g} | {p['p90']:.3g} | {limits} |"
            )
        return ReportSection("quality_values", data, lines)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        data = report.get("quality_values")
        if not data:
            return []
        data = {rule: data[rule] for rule in REJECT_REASONS if rule in data}  # report.json sorts keys
        rows = [{"rule": rule, "value": v, "documents": n} for rule, d in data.items() for v, n in d["distribution"]]
        rules = [
            {"rule": rule, "value": t, "label": f"{rule} threshold"}
            for rule, d in data.items()
            for t in d["thresholds"]
        ]
        return [
            histograms(
                "quality_values",
                "Heuristic rules: the value each rule compared with its threshold",
                rows,
                "value",
                "documents",
                "rule",
                rules=rules,
                caption="Every document each rule measured (buckets 10% wide; value 0 apart); dashed: the thresholds.",
            )
        ]


# Each rule's config fields holding its thresholds, by family.
_THRESHOLD_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gopher_word_count": ("gopher_quality", ("min_doc_words", "max_doc_words")),
    "gopher_mean_word_length": ("gopher_quality", ("min_avg_word_length", "max_avg_word_length")),
    "gopher_symbol_ratio": ("gopher_quality", ("max_symbol_word_ratio",)),
    "gopher_bullet_lines": ("gopher_quality", ("max_bullet_lines_ratio",)),
    "gopher_ellipsis_lines": ("gopher_quality", ("max_ellipsis_lines_ratio",)),
    "gopher_alpha_words": ("gopher_quality", ("min_alpha_words_ratio",)),
    "gopher_stop_words": ("gopher_quality", ("min_stop_words",)),
    "gopher_dup_para_fraction": ("gopher_repetition", ("dup_para_frac",)),
    "gopher_dup_para_char_fraction": ("gopher_repetition", ("dup_para_char_frac",)),
    "gopher_dup_line_fraction": ("gopher_repetition", ("dup_line_frac",)),
    "gopher_dup_line_char_fraction": ("gopher_repetition", ("dup_line_char_frac",)),
    **{f"gopher_top_{n}gram": ("gopher_repetition", (f"top_{n}gram_char_frac",)) for n in TOP_NGRAMS},
    **{f"gopher_dup_{n}gram": ("gopher_repetition", (f"dup_{n}gram_char_frac",)) for n in DUP_NGRAMS},
    "c4_too_few_sentences": ("c4", ("min_num_sentences",)),
    "fineweb_line_punct": ("fineweb", ("line_punct_thr",)),
    "fineweb_short_lines": ("fineweb", ("short_line_thr",)),
    "fineweb_char_dup": ("fineweb", ("char_duplicates_ratio",)),
    "fineweb_list_ratio": ("fineweb", ("new_line_ratio",)),
}


def _thresholds(config: QualityRulesConfig, rule: str) -> list[float]:
    family, fields = _THRESHOLD_FIELDS.get(rule, ("", ()))
    section = getattr(config, family, None)
    return [float(v) for v in (getattr(section, f, None) for f in fields) if v is not None]
