"""The run report: where every input document went, how long each phase took, and
whether the counts balance (input = kept + rejected + quarantined, per shard and in total).
"""

from __future__ import annotations

from typing import Any


class AccountingError(RuntimeError):
    """Documents were lost or counted twice; the report names the shards."""


def _merge_nested(target: dict[str, dict[str, int]], source: dict[str, dict[str, int]]) -> None:
    for stage, reasons in source.items():
        for reason, n in reasons.items():
            target.setdefault(stage, {})[reason] = target.setdefault(stage, {}).get(reason, 0) + n


def build_report(job: str, config_hash: str, annotate_stats: list[dict[str, Any]], dedup_marker: dict[str, Any],
                 pack_stats: list[dict[str, Any]], phases: list[dict[str, Any]],
                 peak_rss_bytes: int | None) -> dict[str, Any]:
    packed = {s["shard_key"]: s for s in pack_stats}
    rejected: dict[str, dict[str, int]] = {}
    quarantined: dict[str, int] = {}
    languages: dict[str, int] = {}
    shard_rows = []
    for shard in annotate_stats:
        for lang, n in shard.get("languages", {}).items():
            languages[lang] = languages.get(lang, 0) + n
        pack = packed.get(shard["shard_key"], {"removed": {}, "kept_docs": 0, "kept_bytes": 0, "annotated_docs": 0})
        _merge_nested(rejected, shard["rejected"])
        _merge_nested(rejected, pack["removed"])
        for reason, n in shard["quarantined"].items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        n_rejected = sum(n for r in shard["rejected"].values() for n in r.values())
        n_removed = sum(n for r in pack["removed"].values() for n in r.values())
        n_quarantined = sum(shard["quarantined"].values())
        accounted = pack["kept_docs"] + n_rejected + n_removed + n_quarantined
        shard_rows.append({
            "shard_key": shard["shard_key"], "uri": shard["uri"], "input_docs": shard["input_docs"],
            "kept_docs": pack["kept_docs"], "rejected_docs": n_rejected + n_removed, "quarantined_docs": n_quarantined,
            "balanced": accounted == shard["input_docs"] and pack["annotated_docs"] == shard["annotated_docs"],
            "shard_quarantined": shard["shard_quarantined"],
        })
    totals = {
        "input_docs": sum(s["input_docs"] for s in annotate_stats),
        "input_bytes": sum(s["input_bytes"] for s in annotate_stats),
        "kept_docs": sum(s["kept_docs"] for s in pack_stats),
        "kept_bytes": sum(s["kept_bytes"] for s in pack_stats),
        "rejected_docs": sum(n for r in rejected.values() for n in r.values()),
        "quarantined_docs": sum(quarantined.values()),
        "tokens": sum(s["tokens"] for s in pack_stats),
        "sequences": sum(s["sequences"] for s in pack_stats),
    }
    removed_in_pack = sum(n for s in pack_stats for r in s["removed"].values() for n in r.values())
    balance = {
        "input": totals["input_docs"],
        "kept": totals["kept_docs"],
        "rejected": totals["rejected_docs"],
        "quarantined": totals["quarantined_docs"],
        "dedup_removed_committed": dedup_marker.get("removed_total", 0),
        "dedup_removed_applied": removed_in_pack,
    }
    balance["ok"] = (
        balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
        and balance["dedup_removed_committed"] == balance["dedup_removed_applied"]
        and all(row["balanced"] for row in shard_rows)
    )
    return {
        "job": job, "config_hash": config_hash, "totals": totals, "balance": balance,
        "rejected": rejected, "quarantined": quarantined,
        "quarantined_shards": [
            {"uri": row["uri"], **row["shard_quarantined"]} for row in shard_rows if row["shard_quarantined"]
        ],
        "phases": phases, "peak_rss_bytes": peak_rss_bytes, "shards": shard_rows,
        "near_dedup": dedup_marker.get("near_dedup"),
        "dedup_index": dedup_marker.get("index"),
        "perplexity_buckets": (dedup_marker.get("stage_state") or {}).get("perplexity"),
        "languages_after_annotate": dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def check_balance(report: dict[str, Any]) -> None:
    if report["balance"]["ok"]:
        return
    bad = [row["uri"] for row in report["shards"] if not row["balanced"]]
    b = report["balance"]
    raise AccountingError(
        f"document counts do not balance: input {b['input']} != kept {b['kept']} + rejected {b['rejected']} "
        f"+ quarantined {b['quarantined']} (dedup removals committed {b['dedup_removed_committed']}, "
        f"applied {b['dedup_removed_applied']}); unbalanced shards: {', '.join(bad) or 'none'}. "
        "The output is not trustworthy; delete its work/ folder and re-run."
    )


def _mb(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e6:,.1f} MB"


def render_markdown(report: dict[str, Any]) -> str:
    t, b = report["totals"], report["balance"]
    lines = [
        f"# Refinery run report: {report['job']}",
        "",
        f"Config hash `{report['config_hash']}`. Counts balance: **{'yes' if b['ok'] else 'NO'}** "
        f"(input {b['input']:,} = kept {b['kept']:,} + rejected {b['rejected']:,} + quarantined {b['quarantined']:,}).",
        "",
        "## Totals",
        "",
        "| | documents | bytes |",
        "|---|---:|---:|",
        f"| input | {t['input_docs']:,} | {_mb(t['input_bytes'])} |",
        f"| kept | {t['kept_docs']:,} | {_mb(t['kept_bytes'])} |",
        f"| rejected | {t['rejected_docs']:,} | |",
        f"| quarantined | {t['quarantined_docs']:,} | |",
        "",
        f"Token shards: {t['tokens']:,} tokens in {t['sequences']:,} sequences.",
        "",
        "## Rejected, by stage and reason",
        "",
        "| stage | reason | documents |",
        "|---|---|---:|",
    ]
    for stage, reasons in sorted(report["rejected"].items()):
        for reason, n in sorted(reasons.items()):
            lines.append(f"| {stage} | {reason} | {n:,} |")
    if not report["rejected"]:
        lines.append("| | (none) | 0 |")
    lines += ["", "## Quarantined, by reason", "", "| reason | documents |", "|---|---:|"]
    for reason, n in sorted(report["quarantined"].items()):
        lines.append(f"| {reason} | {n:,} |")
    if not report["quarantined"]:
        lines.append("| (none) | 0 |")
    if report["quarantined_shards"]:
        lines += ["", "Whole shards quarantined (see `quarantine/`):", ""]
        for shard in report["quarantined_shards"]:
            docs = "unknown" if shard["documents"] is None else f"{shard['documents']:,}"
            lines.append(f"- `{shard['uri']}`: {shard['reason']}: {shard['detail']} (documents: {docs})")
    languages = report.get("languages_after_annotate")
    if languages:
        shown = list(languages.items())[:15]
        lines += ["", "## Languages after annotate (fastText top label)", "", "| language | documents |", "|---|---:|"]
        lines += [f"| {lang} | {n:,} |" for lang, n in shown]
        if len(languages) > len(shown):
            lines.append(f"| {len(languages) - len(shown)} more | {sum(list(languages.values())[15:]):,} |")
    buckets = report.get("perplexity_buckets")
    if buckets:
        low, high = buckets["percentiles"]
        lines += ["", "## Perplexity buckets", "",
                  f"Cut points per language at the {low:g}th and {high:g}th percentiles of perplexity (KLL sketch); "
                  "cut points found by an earlier run on this output are kept.", "",
                  "| language | head: below | tail: from |", "|---|---:|---:|"]
        lines += [f"| {lang} | {a:,.1f} | {b:,.1f} |" for lang, (a, b) in buckets["cutoffs"].items()]
    index = report.get("dedup_index")
    if index and index["indexed_shards"]:
        lines += ["", f"Dedup was incremental: new shards ({index['new_shards']:,}) were deduplicated against the "
                      f"index of shards kept by earlier runs ({index['indexed_shards']:,}), whose decisions stand."]
    near = report.get("near_dedup")
    if near:
        curve = near["candidate_probability"]
        lines += [
            "", "## Near-duplicate LSH",
            "",
            f"Threshold {near['threshold']}, {near['num_perm']} permutations, {near['bands']} bands x "
            f"{near['rows']} rows. Probability that a pair becomes a candidate, by Jaccard similarity:",
            "",
            "| similarity | " + " | ".join(curve) + " |",
            "|---|" + "---:|" * len(curve),
            "| P(candidate) | " + " | ".join(f"{p:.4f}" for p in curve.values()) + " |",
        ]
    lines += ["", "## Phases", "", "| phase | wall s | documents | docs/s | MB/s |", "|---|---:|---:|---:|---:|"]
    for phase in report["phases"]:
        lines.append(
            f"| {phase['name']} | {phase['seconds']:.1f} | {phase['docs']:,} | {phase['docs_per_s']:,.0f} "
            f"| {phase['mb_per_s']:.2f} |"
        )
    lines += ["", f"Peak RSS of any Refinery or Ray process on this machine: {_mb(report['peak_rss_bytes'])}.", ""]
    unbalanced = [row for row in report["shards"] if not row["balanced"]]
    if unbalanced:
        lines += ["## Unbalanced shards", ""] + [f"- `{row['uri']}`" for row in unbalanced] + [""]
    return "\n".join(lines)
