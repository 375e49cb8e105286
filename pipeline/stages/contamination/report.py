"""The contamination section of the run report, and ``contamination.json``."""

from __future__ import annotations

from typing import Any

from pipeline.stages.contamination.config import ContaminationConfig


def contamination_report(
    config: ContaminationConfig, index_summary: dict[str, Any], per_shard: list[dict[str, Any]]
) -> dict[str, Any]:
    """``contamination.json``: per benchmark, the items found in the corpus, the documents
    that overlap them, what was done, and a few example document ids (never text)."""
    merged = merge_stats(per_shard)
    benchmarks = {}
    for name, items in index_summary["benchmarks"].items():
        entry = merged.get(
            name, {"documents": 0, "items": set(), "examples": [], "annotated": 0, "excised": 0, "dropped": 0}
        )
        benchmarks[name] = {
            "items": items,
            "items_found": len(entry["items"]),
            "documents": entry["documents"],
            "annotated": entry["annotated"],
            "excised": entry["excised"],
            "dropped": entry["dropped"],
            "items_found_ids": sorted(entry["items"])[:50],
            "example_documents": entry["examples"],
        }
    return {
        "action": config.action,
        "ngram": config.ngram,
        "min_matching_ngrams": config.min_matching_ngrams,
        "min_item_fraction": config.min_item_fraction,
        "min_informative_words": config.min_informative_words,
        "max_items_per_ngram": config.max_items_per_ngram,
        "index_ngrams": index_summary["ngrams"],
        # absent from the index summary of a run before informative n-grams
        **{key: index_summary[key] for key in ("generic_ngrams", "whole_items") if key in index_summary},
        "benchmarks": benchmarks,
    }


def merge_stats(per_shard: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per benchmark over all shards: documents, distinct items found, outcomes, examples."""
    merged: dict[str, dict[str, Any]] = {}
    for stats in per_shard:
        for benchmark, entry in stats.items():
            into = merged.setdefault(
                benchmark, {"documents": 0, "items": set(), "examples": [], "annotated": 0, "excised": 0, "dropped": 0}
            )
            for key in ("documents", "annotated", "excised", "dropped"):
                into[key] += entry[key]
            into["items"].update(entry["items"])
            into["examples"] = (into["examples"] + entry["examples"])[:5]
    return merged


def _generic_rule(report: dict[str, Any]) -> str:
    """What did not count, for a report with the informative-n-gram settings (older ones lack them)."""
    if "generic_ngrams" not in report:
        return ""
    shared = report["max_items_per_ngram"]
    return (
        f"{report['generic_ngrams']:,} generic n-grams (fewer than {report['min_informative_words']} words "
        "that are not numbers or single letters"
        + (f", or in more than {shared} items" if shared is not None else "")
        + f") do not count; {report['whole_items']:,} items are matched whole (shorter than n words, or no "
        "n-gram counts). "
    )


def render_markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Benchmark contamination",
        "",
        f"Word {report['ngram']}-grams of every eval item, looked up in every document "
        f"(overlap: at least {report['min_matching_ngrams']} n-gram(s) and "
        f"{report['min_item_fraction']:.0%} of the item). Action: **{report['action']}**. "
        f"{_generic_rule(report)}Details in `contamination.json`.",
        "",
        "| benchmark | items | items found | documents | annotated | excised | dropped | example documents |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, b in report["benchmarks"].items():
        examples = ", ".join(f"`{d}`" for d in b["example_documents"][:3]) or "none"
        lines.append(
            f"| {name} | {b['items']:,} | {b['items_found']:,} | {b['documents']:,} | {b['annotated']:,} "
            f"| {b['excised']:,} | {b['dropped']:,} | {examples} |"
        )
    return lines
