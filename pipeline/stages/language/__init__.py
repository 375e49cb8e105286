"""Language identification with fastText (lid.176 by default): ``lang``, ``lang_score``."""

from pipeline.core.charts import Chart, bars, histogram
from pipeline.core.columns import LANG, LANG_SCORE
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.language.config import LanguageConfig, bundled_model
from pipeline.stages.language.stage import SCORE_BINS, LanguageId, prepare_text
from pipeline.stages.registry import register

__all__ = ["LANG", "LANG_SCORE", "LanguageConfig", "LanguageId", "bundled_model", "prepare_text"]

SHOWN_LANGUAGES = 15


@register
class Language(Capability):
    key = "language"
    config = LanguageConfig
    order = 10
    document_stage = LanguageId

    @classmethod
    def report_section(cls, config: LanguageConfig, run: RunRecord) -> ReportSection:
        counts = run.kept_counts(cls.key)
        languages = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines = []
        if languages:
            shown = list(languages.items())[:SHOWN_LANGUAGES]
            lines += ["## Languages after annotate (fastText top label)", "", "| language | documents |", "|---|---:|"]
            lines += [f"| {lang} | {n:,} |" for lang, n in shown]
            if len(languages) > len(shown):
                rest = sum(list(languages.values())[SHOWN_LANGUAGES:])
                lines.append(f"| {len(languages) - len(shown)} more | {rest:,} |")
        scores: dict[str, list[int]] = {}
        for stats in run.stage_stats(cls.key):
            for label, counts in stats.items():
                scores[label] = [a + b for a, b in zip(scores.get(label, [0] * SCORE_BINS), counts)]
        more = {"language_scores": {"min_score": config.min_score, "bins": SCORE_BINS, "labels": scores}}
        return ReportSection("languages_after_annotate", languages, lines, more=more)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        languages = report.get("languages_after_annotate")
        charts = cls._score_charts(report)
        if not languages:
            return charts
        ranked = sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))  # report.json sorts its keys
        shown = ranked[:SHOWN_LANGUAGES]
        rest = sum(n for _, n in ranked[SHOWN_LANGUAGES:])
        rows = [{"language": lang, "documents": n} for lang, n in shown]
        if rest:
            rows.append({"language": f"{len(languages) - len(shown)} more", "documents": rest})
        title = "Languages of the documents annotate kept (fastText top label)"
        return [bars("languages", title, rows, "language", "documents"), *charts]

    @classmethod
    def _score_charts(cls, report: dict) -> list[Chart]:
        scores = report.get("language_scores")
        if not scores or not scores["labels"]:
            return []
        labels = sorted(scores["labels"], key=lambda label: (-sum(scores["labels"][label]), label))[:6]
        width = 1 / scores["bins"]
        points = [
            {"language": label, "score": round((i + 0.5) * width, 3), "documents": n}
            for label in labels
            for i, n in enumerate(scores["labels"][label])
        ]
        rules = [{"value": scores["min_score"], "label": "min_score"}] if scores["min_score"] > 0 else None
        return [
            histogram(
                "language_scores", "Language ID: top-label score of every document scored, per label", points,
                "score", "documents", group="language", rules=rules,
                caption="The six most frequent labels; bins 0.05 wide; dashed: stages.language.min_score.",
            )
        ]  # fmt: skip
