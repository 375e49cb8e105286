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
        "index_ngrams": index_summary["ngrams"],
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


def render_markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Benchmark contamination",
        "",
        f"Word {report['ngram']}-grams of every eval item, looked up in every document "
        f"(overlap: at least {report['min_matching_ngrams']} n-gram(s) and "
        f"{report['min_item_fraction']:.0%} of the item). Action: **{report['action']}**. "
        "Details in `contamination.json`.",
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
