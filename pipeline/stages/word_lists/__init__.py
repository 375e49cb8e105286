"""Word lists: documents matched against lists of words and phrases (bad words, boilerplate,
topics), whole-word and case-insensitive, per language. Each document gets
``word_list_counts`` (matches per list); a list with ``max_ratio`` rejects documents where
its matches make up more than that share of the words (C4's bad-words rule at 0)."""

from typing import Any

from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.registry import register
from pipeline.stages.word_lists.config import ANY_LANGUAGE, WordListConfig, WordListsConfig, read_list
from pipeline.stages.word_lists.matcher import WORD_PATTERN, ListMatcher, WordList, count_words, is_word_char
from pipeline.stages.word_lists.stage import WORD_LIST_COUNTS, WordListsFilter, load_lists, reject_reason

__all__ = [
    "ANY_LANGUAGE",
    "WORD_LIST_COUNTS",
    "WORD_PATTERN",
    "ListMatcher",
    "WordList",
    "WordListConfig",
    "WordListsConfig",
    "WordListsFilter",
    "count_words",
    "is_word_char",
    "load_lists",
    "read_list",
    "reject_reason",
]


@register
class WordLists(Capability):
    key = "word_lists"
    config = WordListsConfig
    order = 15
    hashed_when_unused = False  # added after outputs existed: installing it redoes no work
    document_stage = WordListsFilter

    @classmethod
    def prepare_job(cls, spec, config: WordListsConfig, progress) -> dict[str, Any]:
        """The lists' distinct entries per language, for the report (read once, on the driver)."""
        entries = {
            word_list.name: {label: len(found) for label, found in word_list.distinct_entries().items()}
            for word_list in load_lists(config)
        }
        return {"entries": entries}

    @classmethod
    def report_section(cls, config: WordListsConfig, run: RunRecord) -> ReportSection:
        matched = run.kept_counts(cls.key)
        entries = (run.prepared.get(cls.key) or {}).get("entries", {})
        rejected: dict[str, int] = {}
        for marker in run.annotate:
            for reason, n in marker.rejected.get(cls.key, {}).items():
                rejected[reason] = rejected.get(reason, 0) + n
        data = {
            word_list.name: {
                "entries": entries.get(word_list.name, {}),
                "matched_kept": matched.get(word_list.name, 0),
                "rejected": rejected.get(reject_reason(word_list.name), 0),
                "max_ratio": word_list.max_ratio,
            }
            for word_list in config.lists
        }
        lines = [
            "## Word lists",
            "",
            "| list | entries by language | rule | documents matched (kept) | documents rejected |",
            "|---|---|---|---:|---:|",
        ]
        for (name, row), word_list in zip(data.items(), config.lists):
            languages = ", ".join(f"{label} {n:,}" for label, n in row["entries"].items()) or "-"
            rule = (
                "annotate only"
                if word_list.max_ratio is None
                else f"reject above ratio {word_list.max_ratio:g} ({word_list.min_matches}+ matches)"
            )
            lines.append(f"| {name} | {languages} | {rule} | {row['matched_kept']:,} | {row['rejected']:,} |")
        return ReportSection("word_lists", data, lines)
