"""The url_blocklist section of the run report."""

from __future__ import annotations

from typing import Any

from pipeline.stages.url_blocklist.config import UrlBlocklistConfig
from pipeline.stages.url_blocklist.stage import REASON_PREFIX
from pipeline.stages.url_blocklist.store import problems


def blocklist_report(
    config: UrlBlocklistConfig, summary: dict[str, Any], rejected: dict[str, int], annotated: dict[str, int]
) -> dict[str, Any]:
    """Per category: its entries, the documents it rejected (action reject) and the kept
    documents it matched (action annotate); what the lists left out, per file."""
    categories = {
        name: {
            **entries,
            "rejected": rejected.get(REASON_PREFIX + name, 0),
            "annotated": annotated.get(name, 0),
        }
        for name, entries in summary["categories"].items()
    }
    return {
        "action": config.action,
        "lists": len(config.lists),
        "domains": summary["domains"],
        "urls": summary["urls"],
        "bytes": summary["bytes"],
        "categories": categories,
        "public_suffixes_skipped": summary["public_suffixes_skipped"],
        "public_suffix_examples": summary["public_suffix_examples"],
        "malformed_lines": summary["malformed_lines"],
        "files": summary["files"],
    }


def render_markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "## URL blocklist",
        "",
        f"Each document's host and its parent domains, and its URL's path prefixes, looked up in "
        f"{report['lists']} list(s): {report['domains']:,} domains and {report['urls']:,} URL prefixes in "
        f"{len(report['categories'])} categories. Action: **{report['action']}**.",
        "",
        "| category | domains | URL prefixes | documents rejected | documents annotated |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in report["categories"].items():
        lines.append(f"| {name} | {c['domains']:,} | {c['urls']:,} | {c['rejected']:,} | {c['annotated']:,} |")
    left_out = problems(report)
    if left_out:
        lines += ["", "Left out of the lists:", ""] + [f"- {line}" for line in left_out]
    return lines
