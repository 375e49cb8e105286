"""Model-based quality and content classifiers (fastText): scores as columns, decisions by
threshold or by percentile of the whole run, and domains for the mix from a top label."""

from __future__ import annotations

from typing import Any

from pipeline.core.charts import Chart, histogram
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.classifier.config import ClassifierConfig, ClassifierEntry, DomainRoute, TextPreparation
from pipeline.stages.classifier.percentiles import ClassifierPercentiles
from pipeline.stages.classifier.stage import HISTOGRAM_BINS, Classifiers, above_reason, below_reason
from pipeline.stages.classifier.text import prepare_texts
from pipeline.stages.registry import register

__all__ = [
    "ClassifierConfig",
    "ClassifierEntry",
    "ClassifierPercentiles",
    "Classifiers",
    "DomainRoute",
    "TextPreparation",
    "prepare_texts",
]


@register
class Classifier(Capability):
    key = "classifier"
    config = ClassifierConfig
    order = 25
    hashed_when_unused = False  # added after outputs existed: installing it redoes no work
    document_stage = Classifiers
    global_stage = ClassifierPercentiles

    @classmethod
    def needs_global_stage(cls, config: ClassifierConfig) -> bool:
        return any(entry.uses_percentiles for entry in config.classifiers)

    @classmethod
    def report_section(cls, config: ClassifierConfig, run: RunRecord) -> ReportSection:
        data = classifier_report(config, run)
        return ReportSection(cls.key, data, render_markdown(data))

    @classmethod
    def report_charts(cls, report: dict[str, Any]) -> list[Chart]:
        data = report.get(cls.key)
        charts = []
        for name, entry in sorted(((data or {}).get("classifiers") or {}).items()):
            counts = entry["score_histogram"]
            width = 1 / len(counts)
            rows = [{"score": round((i + 0.5) * width, 4), "documents": n} for i, n in enumerate(counts)]
            cuts = entry["cut_points"]
            rules = [
                {"value": cuts[key], "label": key} for key in ("min_score", "max_score") if cuts.get(key) is not None
            ]
            charts.append(
                histogram(
                    f"classifier_{name}",
                    f"Classifier {name}: scores of every document it scored ({entry['label']})",
                    rows,
                    "score",
                    "documents",
                    rules=rules,
                    caption=(
                        f"{len(counts)} bins over [0, 1]; dashed: the cut points. Rejected below "
                        f"{entry['rejected']['below']:,}, above {entry['rejected']['above']:,}."
                    ),
                )
            )
        return charts


def classifier_report(config: ClassifierConfig, run: RunRecord) -> dict[str, Any]:
    histograms: dict[str, list[int]] = {}
    for stats in run.stage_stats(Classifier.key):
        for name, counts in stats.items():
            previous = histograms.get(name, [0] * HISTOGRAM_BINS)
            histograms[name] = [a + b for a, b in zip(previous, counts)]
    rejected: dict[str, int] = {}
    for marker in run.annotate:
        for reason, n in marker.rejected.get(Classifier.key, {}).items():
            rejected[reason] = rejected.get(reason, 0) + n
    for per_stage in run.dedup.removed_by_shard.values():
        for reason, n in per_stage.get(Classifier.key, {}).items():
            rejected[reason] = rejected.get(reason, 0) + n
    state = run.dedup.stage_state.get(Classifier.key) or {}
    kept = run.kept_counts(Classifier.key)
    classifiers = {}
    for entry in config.classifiers:
        cuts = (state.get("cutoffs") or {}).get(entry.name, {})
        classifiers[entry.name] = {
            "model": entry.model,
            "label": entry.label,
            "score_histogram": histograms.get(entry.name, [0] * HISTOGRAM_BINS),
            "cut_points": {
                "min_score": entry.min_score if entry.min_score is not None else cuts.get("min"),
                "max_score": entry.max_score if entry.max_score is not None else cuts.get("max"),
                "min_percentile": entry.min_percentile,
                "max_percentile": entry.max_percentile,
            },
            "rejected": {
                "below": rejected.get(below_reason(entry.name), 0),
                "above": rejected.get(above_reason(entry.name), 0),
            },
        }
    routed = {key.split(":", 1)[1]: n for key, n in sorted(kept.items()) if key.startswith("routed:")}
    return {"classifiers": classifiers, "routed_domains": routed}


def _bar(n: int, most: int, width: int = 30) -> str:
    return "█" * round(width * n / most) if most else ""


def render_markdown(data: dict[str, Any]) -> list[str]:
    lines = []
    for name, info in data["classifiers"].items():
        histogram = info["score_histogram"]
        scored = sum(histogram)
        cuts = info["cut_points"]
        lines += [f"## Classifier `{name}`", ""]
        lines.append(f"Model `{info['model']}`; score: probability of `{info['label']}`; {scored:,} documents scored.")
        described = []
        for side, word in (("min", "below"), ("max", "above")):
            value, percentile = cuts[f"{side}_score"], cuts[f"{side}_percentile"]
            if value is None and percentile is None:
                continue
            at = f"the run's {percentile:g}th percentile, score {value:.4f}" if percentile is not None else f"{value:g}"
            if percentile is not None and value is None:
                at = f"the run's {percentile:g}th percentile (no document scored)"
            described.append(f"rejected {word} {at}: {info['rejected'][word]:,} documents")
        summary = ("; ".join(described) + ".") if described else "Annotation only: nothing rejected."
        lines += ["", summary[0].upper() + summary[1:], ""]
        if scored:
            cut_bins: dict[int, list[str]] = {}
            for side in ("min", "max"):
                value = cuts[f"{side}_score"]
                if value is not None:
                    cut_bins.setdefault(min(int(value * len(histogram)), len(histogram) - 1), []).append(f"{value:.4f}")
            lines += ["| score | documents | |", "|---|---:|---|"]
            most = max(histogram)
            width = 1 / len(histogram)
            for i, n in enumerate(histogram):
                mark = f" ◀ cut at {', '.join(cut_bins[i])}" if i in cut_bins else ""
                lines.append(f"| {i * width:.2f}–{(i + 1) * width:.2f} | {n:,} | {_bar(n, most)}{mark} |")
            lines.append("")
    if data["routed_domains"]:
        lines += ["### Domains routed by classifiers (kept by annotate)", "", "| domain | documents |", "|---|---:|"]
        lines += [f"| {domain} | {n:,} |" for domain, n in data["routed_domains"].items()]
        lines.append("")
    return lines
