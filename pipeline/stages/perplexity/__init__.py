"""Perplexity under per-language KenLM models (CCNet), and head/middle/tail buckets at
percentiles of the whole run."""

from pipeline.core.charts import Chart, histogram
from pipeline.core.columns import PERPLEXITY
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.perplexity.buckets import PerplexityBuckets
from pipeline.stages.perplexity.config import PerplexityConfig
from pipeline.stages.perplexity.normalize import ccnet_normalize, normalize_lines
from pipeline.stages.perplexity.stage import DISTRIBUTION_GAMMA, Perplexity
from pipeline.stages.registry import register

SHOWN_LANGUAGES = 6

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
        distribution: dict[str, dict[int, int]] = {}
        for stats in run.stage_stats(cls.key):
            for lang, counts in stats.items():
                into = distribution.setdefault(lang, {})
                for bucket, n in counts.items():
                    into[int(bucket)] = into.get(int(bucket), 0) + n
        data = {
            **(buckets or {}),
            "distribution": {
                lang: [
                    [round(2 * DISTRIBUTION_GAMMA**b / (DISTRIBUTION_GAMMA + 1), 2), n] for b, n in sorted(c.items())
                ]
                for lang, c in sorted(distribution.items())
            },
        }
        return ReportSection("perplexity_buckets", data, lines)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        data = report.get("perplexity_buckets") or {}
        distribution = data.get("distribution") or {}
        if not distribution:
            return []
        shown = sorted(distribution, key=lambda lang: -sum(n for _, n in distribution[lang]))[:SHOWN_LANGUAGES]
        rows = [{"language": lang, "perplexity": v, "documents": n} for lang in shown for v, n in distribution[lang]]
        rules = [
            {"value": value, "label": f"{lang} {name}"}
            for lang in shown
            for name, value in zip(("head below", "tail from"), (data.get("cutoffs") or {}).get(lang, []))
        ]
        return [
            histogram(
                "perplexity",
                "Perplexity of every scored document, per language (log scale)",
                rows,
                "perplexity",
                "documents",
                group="language",
                log_x=True,
                rules=rules,
                caption="Buckets 10% wide; dashed: each language's head and tail cut points, at percentiles of the whole run.",
            )
        ]
