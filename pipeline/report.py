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
                 tokenize_stats: list[dict[str, Any]], sample_stats: list[dict[str, Any]], plan: dict[str, Any],
                 pack_stats: list[dict[str, Any]], phases: list[dict[str, Any]],
                 peak_rss_bytes: int | None) -> dict[str, Any]:
    tokenized = {s["shard_key"]: s for s in tokenize_stats}
    sampled = {s["shard_key"]: s for s in sample_stats}
    rejected: dict[str, dict[str, int]] = {}
    quarantined: dict[str, int] = {}
    languages: dict[str, int] = {}
    pii: dict[str, int] = {}
    shard_rows = []
    for shard in annotate_stats:
        for lang, n in shard.get("languages", {}).items():
            languages[lang] = languages.get(lang, 0) + n
        for entity, n in shard.get("pii_replaced", {}).items():
            pii[entity] = pii.get(entity, 0) + n
        tok = tokenized.get(shard["shard_key"], {"removed": {}, "annotated_docs": 0, "tokenized_docs": 0})
        smp = sampled.get(shard["shard_key"], {"unsampled": {}, "kept_docs": 0, "kept_bytes": 0})
        _merge_nested(rejected, shard["rejected"])
        _merge_nested(rejected, tok["removed"])
        _merge_nested(rejected, smp["unsampled"])
        n_rejected = sum(n for part in (shard["rejected"], tok["removed"], smp["unsampled"])
                         for r in part.values() for n in r.values())
        n_unsampled = sum(n for r in smp["unsampled"].values() for n in r.values())
        n_quarantined = sum(shard["quarantined"].values())
        for reason, n in shard["quarantined"].items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        shard_rows.append({
            "shard_key": shard["shard_key"], "uri": shard["uri"], "input_docs": shard["input_docs"],
            "kept_docs": smp["kept_docs"], "rejected_docs": n_rejected, "quarantined_docs": n_quarantined,
            "balanced": (smp["kept_docs"] + n_rejected + n_quarantined == shard["input_docs"]
                         and tok["annotated_docs"] == shard["annotated_docs"]
                         and tok["tokenized_docs"] == smp["kept_docs"] + n_unsampled),
            "shard_quarantined": shard["shard_quarantined"],
        })
    totals = {
        "input_docs": sum(s["input_docs"] for s in annotate_stats),
        "input_bytes": sum(s["input_bytes"] for s in annotate_stats),
        "kept_docs": sum(s["kept_docs"] for s in sample_stats),
        "kept_bytes": sum(s["kept_bytes"] for s in sample_stats),
        "rejected_docs": sum(n for r in rejected.values() for n in r.values()),
        "quarantined_docs": sum(quarantined.values()),
        "document_copies": sum(s["documents"] for s in pack_stats),
        "tokens": sum(s["tokens"] for s in pack_stats),
        "padding_tokens": sum(s["padding_tokens"] for s in pack_stats),
        "sequences": sum(s["sequences"] for s in pack_stats),
        "output_shards": len(pack_stats),
    }
    removed_applied = sum(n for s in tokenize_stats for r in s["removed"].values() for n in r.values())
    packed_domain_tokens: dict[str, int] = {}
    for s in pack_stats:
        for domain, n in s["domain_tokens"].items():
            packed_domain_tokens[domain] = packed_domain_tokens.get(domain, 0) + n
    planned_domain_tokens = {d: v["tokens"] for d, v in plan["realized"].items() if v["tokens"]}
    balance = {
        "input": totals["input_docs"],
        "kept": totals["kept_docs"],
        "rejected": totals["rejected_docs"],
        "quarantined": totals["quarantined_docs"],
        "dedup_removed_committed": dedup_marker.get("removed_total", 0),
        "dedup_removed_applied": removed_applied,
        "copies_planned": plan["total_copies"],
        "copies_packed": totals["document_copies"],
    }
    balance["ok"] = (
        balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
        and balance["dedup_removed_committed"] == balance["dedup_removed_applied"]
        and balance["copies_planned"] == balance["copies_packed"]
        and planned_domain_tokens == packed_domain_tokens
        and all(row["balanced"] for row in shard_rows)
    )
    mixture = {
        d: {"available_tokens": plan["available_tokens"][d], "target_weight": plan["weights"].get(d, 0.0),
            "target_tokens": plan["target_tokens"][d], "rate": plan["rates"][d],
            "realized_tokens": packed_domain_tokens.get(d, 0),
            "documents": plan["realized"].get(d, {}).get("docs", 0)}
        for d in sorted(plan["available_tokens"])
    }
    shard_tokens = sorted(s["tokens"] for s in pack_stats)
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
        "pii_replaced": dict(sorted(pii.items())),
        "mixture": {"domains": mixture, "budget_tokens": plan["budget_tokens"], "notes": plan["notes"],
                    "max_epochs": plan["max_epochs"]},
        "output_shards": {"count": len(pack_stats), "min_tokens": shard_tokens[0] if shard_tokens else 0,
                          "median_tokens": shard_tokens[len(shard_tokens) // 2] if shard_tokens else 0,
                          "max_tokens": shard_tokens[-1] if shard_tokens else 0},
    }


def check_balance(report: dict[str, Any]) -> None:
    if report["balance"]["ok"]:
        return
    bad = [row["uri"] for row in report["shards"] if not row["balanced"]]
    b = report["balance"]
    raise AccountingError(
        f"document counts do not balance: input {b['input']} != kept {b['kept']} + rejected {b['rejected']} "
        f"+ quarantined {b['quarantined']} (dedup removals committed {b['dedup_removed_committed']}, "
        f"applied {b['dedup_removed_applied']}; document copies planned {b['copies_planned']}, packed "
        f"{b['copies_packed']}); unbalanced shards: {', '.join(bad) or 'none'}. "
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
    ]
    lines += [
    ]
    if report.get("snapshot"):
        lines += [f"Snapshot `{report['snapshot']}`: `snapshots/{report['snapshot']}/`, named by `latest.json` once "
                  "its manifest is committed.", ""]
    units = report.get("work_units")
    if units:
        lines += ["## Work done and reused", "",
                  "Units an earlier run committed with the same inputs and settings are reused, not redone.", "",
                  "| phase | units | done in this run | reused |", "|---|---:|---:|---:|"]
        lines += [f"| {phase} | {u['total']:,} | {u['total'] - u['reused']:,} | {u['reused']:,} |"
                  for phase, u in units.items()]
        lines.append("")
    lines += [
        "## Totals",
        "",
        "| | documents | bytes |",
        "|---|---:|---:|",
        f"| input | {t['input_docs']:,} | {_mb(t['input_bytes'])} |",
        f"| kept | {t['kept_docs']:,} | {_mb(t['kept_bytes'])} |",
        f"| rejected | {t['rejected_docs']:,} | |",
        f"| quarantined | {t['quarantined_docs']:,} | |",
        "",
        f"Token shards: {t['tokens']:,} tokens in {t['sequences']:,} sequences of {t['document_copies']:,} "
        f"document copies, {t['output_shards']:,} shard{'s' if t['output_shards'] != 1 else ''}"
        + (f"; padding {t['padding_tokens']:,} tokens ({t['padding_tokens'] / t['tokens']:.2%} of all)."
           if t["padding_tokens"] else "."),
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
    pii = report.get("pii_replaced")
    if pii:
        lines += ["", "## PII replaced (spans, in documents kept by annotate)", "", "| entity | spans |", "|---|---:|"]
        lines += [f"| {entity} | {n:,} |" for entity, n in pii.items()]
    contamination = report.get("contamination")
    if contamination:
        lines += ["", "## Benchmark contamination", "",
                  f"Word {contamination['ngram']}-grams of every eval item, looked up in every document "
                  f"(overlap: at least {contamination['min_matching_ngrams']} n-gram(s) and "
                  f"{contamination['min_item_fraction']:.0%} of the item). Action: **{contamination['action']}**. "
                  "Details in `contamination.json`.", "",
                  "| benchmark | items | items found | documents | annotated | excised | dropped | example documents |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, b in contamination["benchmarks"].items():
            examples = ", ".join(f"`{d}`" for d in b["example_documents"][:3]) or "none"
            lines.append(f"| {name} | {b['items']:,} | {b['items_found']:,} | {b['documents']:,} | {b['annotated']:,} "
                         f"| {b['excised']:,} | {b['dropped']:,} | {examples} |")
    buckets = report.get("perplexity_buckets")
    if buckets:
        low, high = buckets["percentiles"]
        lines += ["", "## Perplexity buckets", "",
                  f"Cut points per language at the {low:g}th and {high:g}th percentiles of perplexity (log-bucket sketch, "
                  "0.1% relative accuracy); "
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
    mix = report.get("mixture")
    if mix and mix["domains"]:
        realized_total = sum(d["realized_tokens"] for d in mix["domains"].values()) or 1
        lines += ["", "## Mixture (tokens)", "",
                  f"Budget {mix['budget_tokens']:,.0f} tokens; at most {mix['max_epochs']:g} copies of a document.", "",
                  "| domain | available | target share | target | copies per token | realized | realized share |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, d in mix["domains"].items():
            lines.append(f"| {name} | {d['available_tokens']:,} | {d['target_weight']:.2%} | {d['target_tokens']:,.0f} "
                         f"| {d['rate']:.3f} | {d['realized_tokens']:,} | {d['realized_tokens'] / realized_total:.2%} |")
        for note in mix["notes"]:
            lines.append(f"\n**Note:** {note}.")
    shards = report.get("output_shards")
    if shards and shards["count"]:
        lines += ["", f"Output shards: {shards['count']:,}, tokens per shard min {shards['min_tokens']:,}, "
                      f"median {shards['median_tokens']:,}, max {shards['max_tokens']:,}."]
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
