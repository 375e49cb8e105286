"""Language identification with fastText (lid.176 by default): ``lang``, ``lang_score``."""

from pipeline.core.charts import Chart, bars
from pipeline.core.columns import LANG, LANG_SCORE
from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.language.config import LanguageConfig, bundled_model
from pipeline.stages.language.stage import LanguageId, prepare_text
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
        return ReportSection("languages_after_annotate", languages, lines)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        languages = report.get("languages_after_annotate")
        if not languages:
            return []
        ranked = sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))  # report.json sorts its keys
        shown = ranked[:SHOWN_LANGUAGES]
        rest = sum(n for _, n in ranked[SHOWN_LANGUAGES:])
        rows = [{"language": lang, "documents": n} for lang, n in shown]
        if rest:
            rows.append({"language": f"{len(languages) - len(shown)} more", "documents": rest})
        return [
            bars(
                "languages",
                "Languages of the documents annotate kept (fastText top label)",
                rows,
                "language",
                "documents",
            )
        ]
