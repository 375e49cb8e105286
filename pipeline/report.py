"""The run report: where every input document went, how long each phase took, and
whether the counts balance (input = kept + rejected + quarantined, per shard and in total).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from pipeline.core import storage
from pipeline.core.layout import OutputLayout
from pipeline.core.markers import RunRecord
from pipeline.phases.mix.plan import synthetic_share, synthetic_share_warnings
from pipeline.phases.mix.profile import compare, comparison_lines
from pipeline.stages.base import ReportSection
from pipeline.stages.registry import enabled


class AccountingError(RuntimeError):
    """Documents were lost or counted twice; the report names the shards."""


def _merge_nested(target: dict[str, dict[str, int]], source: dict[str, dict[str, int]]) -> None:
    for stage, reasons in source.items():
        for reason, n in reasons.items():
            target.setdefault(stage, {})[reason] = target.setdefault(stage, {}).get(reason, 0) + n


@dataclass
class Report:
    """``data`` is ``report.json``; ``sections`` are the enabled capabilities' parts."""

    data: dict[str, Any]
    sections: list[ReportSection] = field(default_factory=list)


def build_report(run: RunRecord) -> Report:
    tokenized = {s.shard_key: s for s in run.tokenize}
    sampled = {s.shard_key: s for s in run.sample}
    rejected: dict[str, dict[str, int]] = {}
    quarantined: dict[str, int] = {}
    shard_rows = []
    for shard in run.annotate:
        tok = tokenized.get(shard.shard_key)
        tok_removed = tok.removed if tok else {}
        tok_rejected = tok.rejected if tok else {}
        smp = sampled.get(shard.shard_key)
        unsampled = smp.unsampled if smp else {}
        kept_docs = smp.kept_docs if smp else 0
        _merge_nested(rejected, shard.rejected)
        _merge_nested(rejected, tok_removed)
        _merge_nested(rejected, tok_rejected)
        _merge_nested(rejected, unsampled)
        n_rejected = sum(
            n
            for part in (shard.rejected, tok_removed, tok_rejected, unsampled)
            for r in part.values()
            for n in r.values()
        )
        n_unsampled = sum(n for r in unsampled.values() for n in r.values())
        n_quarantined = sum(shard.quarantined.values())
        for reason, n in shard.quarantined.items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        shard_rows.append(
            {
                "shard_key": shard.shard_key,
                "uri": shard.uri,
                "input_docs": shard.input_docs,
                "kept_docs": kept_docs,
                "rejected_docs": n_rejected,
                "quarantined_docs": n_quarantined,
                "balanced": (
                    kept_docs + n_rejected + n_quarantined == shard.input_docs
                    and (tok.annotated_docs if tok else 0) == shard.annotated_docs
                    and (tok.tokenized_docs if tok else 0) == kept_docs + n_unsampled
                ),
                "shard_quarantined": shard.shard_quarantined,
            }
        )
    pack, plan = run.pack, run.plan
    totals = {
        "input_docs": sum(s.input_docs for s in run.annotate),
        "input_bytes": sum(s.input_bytes for s in run.annotate),
        "kept_docs": sum(s.kept_docs for s in run.sample),
        "kept_bytes": sum(s.kept_bytes for s in run.sample),
        "rejected_docs": sum(n for r in rejected.values() for n in r.values()),
        "quarantined_docs": sum(quarantined.values()),
        "document_copies": sum(s.documents for s in pack),
        "output_documents": sum(s.documents for s in pack) if run.spec.output.writes_documents else 0,
        "output_text_bytes": sum(s.document_bytes for s in pack),
        "tokens": sum(s.tokens for s in pack),
        "padding_tokens": sum(s.padding_tokens for s in pack),
        "sequences": sum(s.sequences for s in pack),
        "output_shards": len(pack),
        # shards quarantined whole: their documents count as quarantined where the row count
        # could be read, and in no count where it could not
        "unreadable_shards": sum(1 for s in run.annotate if s.shard_quarantined),
        "unreadable_bytes": sum(int(s.fingerprint.get("size") or 0) for s in run.annotate if s.shard_quarantined),
        "unreadable_shards_documents_unknown": sum(
            1 for s in run.annotate if s.shard_quarantined and s.shard_quarantined.get("documents") is None
        ),
    }
    removed_applied = sum(n for s in run.tokenize for r in s.removed.values() for n in r.values())
    unit = plan["unit"]
    packed_per_domain: dict[str, int] = {}
    for s in pack:
        for domain, n in (s.domain_tokens if unit == "tokens" else s.domain_bytes).items():
            packed_per_domain[domain] = packed_per_domain.get(domain, 0) + n
    planned_per_domain = {d: v[unit] for d, v in plan["realized"].items() if v[unit]}
    balance = {
        "input": totals["input_docs"],
        "kept": totals["kept_docs"],
        "rejected": totals["rejected_docs"],
        "quarantined": totals["quarantined_docs"],
        "dedup_removed_committed": run.dedup.removed_total,
        "dedup_removed_applied": removed_applied,
        "copies_planned": plan["total_copies"],
        "copies_packed": totals["document_copies"],
        "unreadable_shards": totals["unreadable_shards"],
        "unreadable_shards_documents_unknown": totals["unreadable_shards_documents_unknown"],
    }
    balance["ok"] = (
        balance["input"] == balance["kept"] + balance["rejected"] + balance["quarantined"]
        and balance["dedup_removed_committed"] == balance["dedup_removed_applied"]
        and balance["copies_planned"] == balance["copies_packed"]
        and planned_per_domain == {d: n for d, n in packed_per_domain.items() if n}
        and all(row["balanced"] for row in shard_rows)
    )
    synthetic_domains, share = synthetic_share(run.spec, packed_per_domain)
    mixture = {
        d: {
            f"available_{unit}": plan["available"][d],
            "target_weight": plan["weights"].get(d, 0.0),
            f"target_{unit}": plan["target"][d],
            "rate": plan["rates"][d],
            f"realized_{unit}": packed_per_domain.get(d, 0),
            "documents": plan["realized"].get(d, {}).get("docs", 0),
        }
        for d in sorted(plan["available"])
    }
    shard_sizes = sorted(s.tokens if unit == "tokens" else s.document_bytes for s in pack)
    data = {
        "job": run.spec.name,
        "config_hash": run.spec.config_hash(),
        "totals": totals,
        "balance": balance,
        "rejected": rejected,
        "quarantined": quarantined,
        "quarantined_shards": [
            {"uri": shard.uri, "bytes": int(shard.fingerprint.get("size") or 0), **shard.shard_quarantined}
            for shard in run.annotate
            if shard.shard_quarantined
        ],
        "phases": run.phases,
        "peak_rss_bytes": run.peak_rss_bytes,
        "peak_private_bytes": run.peak_private_bytes,
        "shards": shard_rows,
        "dedup_index": run.dedup.index,
        "output_kind": run.spec.output.kind,
        "mixture": {
            "unit": unit,
            "domains": mixture,
            f"budget_{unit}": plan["budget"],
            "notes": plan["notes"],
            "max_epochs": plan["max_epochs"],
            "synthetic_domains": synthetic_domains,
            "synthetic_share": share,
            "min_real_fraction": run.spec.stages.mix.min_real_fraction,
            "on_real_floor": run.spec.stages.mix.on_real_floor,
            "warnings": synthetic_share_warnings(run.spec, share, run.previous_snapshot),
            "synthetic_vs_real": compare([s.profiles for s in run.tokenize if s.profiles], synthetic_domains),
        },
        "output_shards": {
            "count": len(pack),
            f"min_{unit}": shard_sizes[0] if shard_sizes else 0,
            f"median_{unit}": shard_sizes[len(shard_sizes) // 2] if shard_sizes else 0,
            f"max_{unit}": shard_sizes[-1] if shard_sizes else 0,
            "sizes": [s.tokens if unit == "tokens" else s.document_bytes for s in sorted(pack, key=lambda s: s.index)],
        },
        "snapshot": run.snapshot,
        "work_units": run.work_units,
        "annotate_steps": _annotate_steps(run),
    }
    data["lengths"] = lengths_section(run)
    if run.spec.report.examples:
        data["examples"] = examples_section(run)
    if run.spec.input.chat is not None and run.spec.output.writes_tokens:
        data["chat"] = _chat_section(run)
    if run.generate:
        data["generation"] = generation_section(run.spec, run.generate)
    sections = []
    for cap, config in enabled(run.spec):
        section = cap.report_section(config, run)
        if section is not None:
            data[section.key] = section.data
            data.update(section.more)
            sections.append(section)
    return Report(data, sections)


def lengths_section(run: RunRecord) -> dict[str, Any]:
    """Document lengths, as ``[value, documents]`` per bucket about 10% wide: characters of the
    valid documents read (``input_chars``) and of those kept before the mixture samples them
    (``kept_chars``), and the kept ones' tokens (``kept_tokens``, token outputs); the input's
    tokens (``input_tokens_sample``) counted on the seeded sample of one valid document in
    ``input_tokens_sample_rate`` that annotate tokenizes."""
    from pipeline.core import sketch
    from pipeline.phases.annotate.phase import INPUT_TOKENS_SAMPLE

    parts = {
        "input_chars": [m.length_buckets.get("chars", {}) for m in run.annotate],
        "input_tokens_sample": [m.length_buckets.get("tokens_sample", {}) for m in run.annotate],
        "kept_chars": [m.length_buckets.get("chars", {}) for m in run.tokenize],
        "kept_tokens": [m.length_buckets.get("tokens", {}) for m in run.tokenize],
    }
    out: dict[str, Any] = {}
    for name, counts in parts.items():
        merged = sketch.merged_counts(counts)
        if merged:
            out[name] = [[round(sketch.bucket_value(b, sketch.LENGTH_GAMMA), 1), n] for b, n in merged.items()]
    if "input_tokens_sample" in out:
        out["input_tokens_sample_rate"] = INPUT_TOKENS_SAMPLE
    return out


def examples_section(run: RunRecord) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per stage and reason, the run's examples (``pipeline.phases.examples``); a duplicate's
    with the start of the document it duplicates (``survivor``), and a near duplicate matched
    to another document on the way to it with that one's start too (``matched``, with their
    similarity). Read from the documents' annotated shards and scrubbed as this run's stages
    scrub examples (a shard may be an earlier run's)."""
    from pipeline.core import columns as cols
    from pipeline.phases.examples import SCRUB_MARGIN, SNIPPET_CHARS, hidden_texts, merge, scrubbed_snippets
    from pipeline.stages.base import DocumentStage
    from pipeline.stages.registry import document_stages

    units = [m.examples for m in run.annotate] + [m.examples for m in run.tokenize]
    merged = merge(units, run.spec.report.examples_per_reason)
    layout = OutputLayout(run.spec.output.uri)
    options = run.spec.output.storage_options
    # (example, "survivor" or "matched", the document's id, (text window, cut))
    waiting: list[tuple[dict[str, Any], str, str | None, tuple[str, bool]]] = []
    hiders = [stage for stage in document_stages(run.spec) if stage.example_hiding_columns]
    hiding = [c for stage in hiders for c in stage.example_hiding_columns]

    def document_start(shard: str, row: int) -> tuple[str | None, tuple[str, bool]] | None:
        try:
            with storage.open_read(layout.annotated(shard), options, random_access=True) as source:
                names = pq.ParquetFile(source).schema_arrow.names
                wanted = [cols.ID, cols.TEXT, *(c for c in hiding if c in names)]
                found = pq.read_table(source, columns=wanted, filters=[(cols.ROW, "=", row)])
        except (OSError, ValueError):
            return None  # kept by an earlier run whose work files are gone
        hidden = hidden_texts(hiders, found)
        if not found.num_rows or (hidden is not None and hidden[0]):
            return None
        text = found.column(cols.TEXT)[0].as_py() or ""
        window = SNIPPET_CHARS + SCRUB_MARGIN
        return found.column(cols.ID)[0].as_py(), (text[:window], len(text) > window)

    for reasons in merged.values():
        for examples in reasons.values():
            for example in examples:
                del example["key"]
                detail = example["detail"]
                survivor = detail.pop(cols.SURVIVOR_SHARD, None), detail.pop(cols.SURVIVOR_ROW, None)
                matched = detail.pop(cols.MATCHED_SHARD, None), detail.pop(cols.MATCHED_ROW, None)
                for role, (shard, row) in (("survivor", survivor), ("matched", matched)):
                    if shard is None or row is None or (role == "matched" and matched == survivor):
                        continue
                    start = document_start(shard, row)
                    if start is not None:
                        waiting.append((example, role, *start))
    if waiting:
        scrubbers = [s for s in document_stages(run.spec) if type(s).scrub_examples is not DocumentStage.scrub_examples]
        for stage in scrubbers:
            stage.setup()
        texts = scrubbed_snippets([item for *_, item in waiting], scrubbers)
        for (example, role, doc_id, _), text in zip(waiting, texts):
            if text is not None:
                example[role] = {"id": doc_id, "text": text}
                if role == "matched":
                    example[role]["similarity"] = example["detail"].get(cols.SIMILARITY)
    return merged


_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _examples_lines(examples: dict[str, Any], rejected: dict[str, dict[str, int]]) -> list[str]:
    lines = [
        "",
        "## Examples of what each rule did",
        "",
        "A few documents per stage and reason, chosen by the job's seed; the start of each text "
        "(PII scrubbed; none for contamination), and what the stage recorded.",
    ]
    for stage in _pipeline_order(examples):
        for reason, chosen in examples[stage].items():
            total = rejected.get(stage, {}).get(reason)
            of = f" ({len(chosen)} of {total:,})" if total else ""
            lines += ["", f"**{stage} / {reason}**{of}", ""]
            for example in chosen:
                detail = ", ".join(
                    f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in example["detail"].items() if v is not None
                )
                head = f"- `{example['id']}`" + (f" ({detail.translate(_MARKDOWN_SPECIAL)})" if detail else "")
                lines.append(head + (f": {example['text'].translate(_MARKDOWN_SPECIAL)}" if example["text"] else ""))
                matched = example.get("matched")
                if matched:
                    similarity = (
                        f", similarity {matched['similarity']}" if matched.get("similarity") is not None else ""
                    )
                    lines.append(
                        f"  - matched to `{matched['id']}`{similarity}: {matched['text'].translate(_MARKDOWN_SPECIAL)}"
                    )
                survivor = example.get("survivor")
                if survivor:
                    lines.append(
                        f"  - kept instead, `{survivor['id']}`: {survivor['text'].translate(_MARKDOWN_SPECIAL)}"
                    )
    return lines


def _output_lines(report: dict[str, Any]) -> list[str]:
    t, kind = report["totals"], report.get("output_kind", "tokens")
    shards = f"{t['output_shards']:,} shard{'s' if t['output_shards'] != 1 else ''}"
    lines = []
    if kind in ("tokens", "both"):
        lines.append(
            f"Token shards: {t['tokens']:,} tokens in {t['sequences']:,} sequences of {t['document_copies']:,} "
            f"document copies, {shards}"
            + (
                f"; padding {t['padding_tokens']:,} tokens ({t['padding_tokens'] / t['tokens']:.2%} of all)."
                if t["padding_tokens"]
                else "."
            )
        )
    if kind in ("documents", "both"):
        lines.append(
            f"Document shards: {t['output_documents']:,} document copies, {_mb(t['output_text_bytes'])} of text, {shards}."
        )
    return lines


def _chat_section(run: RunRecord) -> dict[str, Any]:
    """A chat job's conversations: how many, their turns and lengths, what the template
    refused, and the output's trained and masked tokens and packing efficiency."""
    from pipeline.core.sketch import BUCKET, COUNT, GROUP, percentile_values
    from pipeline.phases.tokenize.chat import LENGTH_GAMMA

    stats = [s.chat for s in run.tokenize if s.chat]
    rows, errors = [], {}
    for s in stats:
        rows += [{GROUP: "all", BUCKET: int(b), COUNT: n} for b, n in s["length_buckets"].items()]
        for message, n in s["template_errors"].items():
            errors[message] = errors.get(message, 0) + n
    percentiles = (50.0, 90.0, 99.0, 100.0)
    values = percentile_values(rows, LENGTH_GAMMA, percentiles).get("all") if rows else None
    conversations = sum(s["conversations"] for s in stats)
    tokens = sum(p.tokens for p in run.pack)
    trained = sum(p.trained_tokens for p in run.pack)
    sequences = sum(p.sequences for p in run.pack)
    seq_len = run.spec.stages.pack.seq_len
    return {
        "conversations": conversations,
        "messages": sum(s["messages"] for s in stats),
        "messages_per_conversation": round(sum(s["messages"] for s in stats) / conversations, 2)
        if conversations
        else 0,
        "truncated": sum(s["truncated"] for s in stats),
        "length_tokens": {f"p{p:g}": round(v) for p, v in zip(percentiles, values)} if values else {},
        "template_errors": dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))[:20]),
        "output": {
            "tokens": tokens,
            "trained_tokens": trained,
            "masked_tokens": tokens - trained,
            "sequences": sequences,
            "packing_efficiency": round(tokens / (sequences * seq_len), 4) if sequences else 0.0,
        },
    }


def generation_section(spec, rounds: list) -> dict[str, Any]:
    """A generation job's rounds: records kept, what was rejected and why, and what the
    backend did (requests, retries, cache hits, failures by kind, tokens, rates)."""
    from pipeline.generation.client import BackendStats

    requests = BackendStats()
    rejected: dict[str, int] = {}
    for marker in rounds:
        requests.merge(BackendStats(**marker.requests))
        for reason, n in marker.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    seconds = sum(m.seconds for m in rounds)
    sent = requests.requests - requests.cache_hits
    backend = spec.generate.backend
    by_role: dict[str, BackendStats] = {}
    role_seconds: dict[str, float] = {}
    for marker in rounds:
        for role, stats in marker.backends.items():
            by_role.setdefault(role, BackendStats()).merge(BackendStats(**stats))
            role_seconds[role] = role_seconds.get(role, 0.0) + stats.get("seconds", 0.0)
    backends = spec.generate.backends()
    return {
        "method": spec.generate.method,
        "generator": backend.model,
        "judge": spec.generate.backend_for("judge").model if spec.generate.method == "judge" else None,
        "endpoint_kind": backend.kind,
        "domain": spec.generate.domain,
        "records": sum(m.records for m in rounds),
        "source_records": sum(m.source_records for m in rounds),
        "candidates": sum(m.candidates for m in rounds),
        "completion_tokens": sum(m.completion_tokens for m in rounds),
        "rejected": dict(sorted(rejected.items(), key=lambda item: (-item[1], item[0]))),
        "requests": {
            **requests.to_json(),
            "seconds": round(seconds, 3),
            "requests_per_s": round(sent / seconds, 2) if seconds else 0.0,
            "tokens_per_s": round((requests.prompt_tokens + requests.completion_tokens) / seconds, 1)
            if seconds
            else 0.0,
        },
        "backends": {
            role: {
                "model": backends[role].model if role in backends else None,
                **stats.to_json(),
                "requests_per_s": _rate(stats.requests - stats.cache_hits, role_seconds[role]),
                "tokens_per_s": _rate(stats.prompt_tokens + stats.completion_tokens, role_seconds[role]),
            }
            for role, stats in sorted(by_role.items())
        },
        "rounds": [
            {
                "round": m.round,
                "records": m.records,
                "candidates": m.candidates,
                "requests": m.requests.get("requests", 0),
                "cache_hits": m.requests.get("cache_hits", 0),
                "completion_tokens": m.completion_tokens,
                "seconds": m.seconds,
            }
            for m in rounds
        ],
    }


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds else 0.0


def _real_floor_sentence(mix: dict[str, Any]) -> str:
    floor, share = mix.get("min_real_fraction"), mix["synthetic_share"]
    if floor is None:
        return ""
    setting = f"stages.mix.min_real_fraction {floor:g}, on_real_floor: {mix['on_real_floor']}"
    if share in (0.0, 1.0):
        return f" The real-data floor ({setting}) applies where real and synthetic data are mixed."
    under = floor - (1 - share)
    if under < 5e-4:  # under a twentieth of a percent: what sampling documents at a rate gives
        return f" The real-data floor ({setting}) holds."
    return (
        f" Real data is {under:.1%} under the floor ({setting}) as sampled: the plan held it, and each document "
        "is drawn at its domain's rate, so the share written differs from the planned one by chance."
    )


def _generation_lines(generation: dict[str, Any]) -> list[str]:
    r = generation["requests"]
    failures = ", ".join(f"{kind} {n:,}" for kind, n in sorted(r["failures"].items())) or "none"
    lines = [
        "",
        "## Generation",
        "",
        f"{generation['method']} with `{generation['generator']}` ({generation['endpoint_kind']} endpoint)"
        + (f", judged by `{generation['judge']}`" if generation.get("judge") else "")
        + ": "
        f"{generation['records']:,} records kept of {generation['candidates']:,} candidates in "
        f"{len(generation['rounds'])} rounds, as domain `{generation['domain']}` (synthetic)"
        + (
            f"; beside them {generation['source_records']:,} source documents (real)."
            if generation.get("source_records")
            else "."
        ),
        f"Requests: {r['requests']:,} ({r['cache_hits']:,} answered from the cache), {r['retries']:,} retries, "
        f"failed after retries: {failures}; {r['prompt_tokens']:,} prompt and {r['completion_tokens']:,} completion "
        f"tokens; {r['requests_per_s']:g} requests/s and {r['tokens_per_s']:g} tokens/s; "
        f"{r['rate_limit_wait_s']:.1f} s waiting on the rate limit.",
    ]
    if len(generation.get("backends", {})) > 1:
        lines += ["", "| backend | model | requests | from cache | failed | tokens | requests/s | tokens/s |"]
        lines += ["|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [
            f"| {role} | `{b['model']}` | {b['requests']:,} | {b['cache_hits']:,} | {sum(b['failures'].values()):,} | "
            f"{b['prompt_tokens'] + b['completion_tokens']:,} | {b['requests_per_s']:g} | {b['tokens_per_s']:g} |"
            for role, b in generation["backends"].items()
        ]
    lines += [
        "",
        "| round | records | candidates | requests | from cache | completion tokens | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {x['round']} | {x['records']:,} | {x['candidates']:,} | {x['requests']:,} | {x['cache_hits']:,} | "
        f"{x['completion_tokens']:,} | {x['seconds']:.1f} |"
        for x in generation["rounds"]
    ]
    if generation["rejected"]:
        lines += ["", "Rejected before they became records (candidates and failed requests):", ""]
        lines += [f"- {reason}: {n:,}" for reason, n in generation["rejected"].items()]
    return lines


def _chat_lines(chat: dict[str, Any]) -> list[str]:
    out = chat["output"]
    lengths = chat["length_tokens"]
    lines = [
        "",
        "## Conversations",
        "",
        f"{chat['conversations']:,} conversations tokenized, {chat['messages_per_conversation']:g} messages each on "
        f"average; {chat['truncated']:,} truncated at a turn boundary to fit.",
    ]
    if lengths:
        lines.append(
            "Length in tokens (within 1%): median {p50:,}, p90 {p90:,}, p99 {p99:,}, longest {p100:,}.".format(
                **lengths
            )
        )
    lines += [
        "",
        "| output | tokens | share |",
        "|---|---:|---:|",
        f"| trained (loss mask on) | {out['trained_tokens']:,} | {_share(out['trained_tokens'], out['tokens'])} |",
        f"| masked (prompts, system, tool results) | {out['masked_tokens']:,} | {_share(out['masked_tokens'], out['tokens'])} |",
        f"| all, in {out['sequences']:,} sequences | {out['tokens']:,} | packing efficiency {out['packing_efficiency']:.2%} |",
    ]
    if chat["template_errors"]:
        lines += ["", "The chat template refused conversations with these messages:", ""]
        lines += [f"- {n:,} x `{message}`" for message, n in chat["template_errors"].items()]
    return lines


def _annotate_steps(run: RunRecord) -> list[dict[str, Any]]:
    """Worker seconds by annotate step, summed over every unit's marker, in pipeline order
    (a list: report.json is written with sorted keys)."""
    steps: dict[str, float] = {}
    for marker in run.annotate:
        for step, seconds in marker.step_seconds.items():
            steps[step] = steps.get(step, 0.0) + seconds
    order = ["read", "validate", "tokens_sample", *_pipeline_order(steps), "write"]
    return [{"step": step, "seconds": round(steps[step], 3)} for step in dict.fromkeys(order) if step in steps]


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


def unreadable_summary(totals: dict[str, Any]) -> str:
    """``2 input shards (3.4 MB) could not be read, 1 with documents unknown: ...``, or ''."""
    n, unknown = totals["unreadable_shards"], totals["unreadable_shards_documents_unknown"]
    if not n:
        return ""
    text = f"{n:,} input shard{'s' if n != 1 else ''} ({_mb(totals['unreadable_bytes'])}) could not be read"
    if unknown:
        text += (
            f", {'all' if unknown == n else unknown} with documents unknown"
            " (not in the counts above; quarantine/ and report.json name them)"
        )
    return text


def _pipeline_order(stages: dict[str, Any]) -> list[str]:
    """Reject stages in the order documents meet them: input validation, the capabilities by
    their order (document stage, then global stage), the mixture; any other name last."""
    from pipeline.stages.registry import capabilities

    order = ["validate"]
    for cap in capabilities():
        for stage in (cap.document_stage, cap.global_stage):
            if stage is not None:
                order.append(stage.name)
        order.append(cap.key)
    order += ["chat_template", "chat_format", "mix"]
    rank = {name: i for i, name in reversed(list(enumerate(order)))}
    return sorted(stages, key=lambda name: (rank.get(name, len(order)), name))


def _share(n: int, total: int) -> str:
    return f"{n / total:.1%}" if total else ""


def _mb(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e6:,.1f} MB"


def render_markdown(built: Report) -> str:
    report = built.data
    t, b = report["totals"], report["balance"]
    lines = [
        f"# Refinery run report: {report['job']}",
        "",
        f"Config hash `{report['config_hash']}`. Counts balance: **{'yes' if b['ok'] else 'NO'}** "
        f"(input {b['input']:,} = kept {b['kept']:,} + rejected {b['rejected']:,} + quarantined {b['quarantined']:,}).",
        "",
    ]
    if t.get("unreadable_shards"):
        lines += [f"**{unreadable_summary(t)}.**", ""]
    if report.get("snapshot"):
        lines += [
            f"Snapshot `{report['snapshot']}`: `snapshots/{report['snapshot']}/`, named by `latest.json` once "
            "its manifest is committed.",
            "",
        ]
    units = report.get("work_units")
    if units:
        lines += [
            "## Work done and reused",
            "",
            "Units an earlier run committed with the same inputs and settings are reused, not redone.",
            "",
            "| phase | units | done in this run | reused |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {phase} | {u['total']:,} | {u['total'] - u['reused']:,} | {u['reused']:,} |"
            for phase, u in units.items()
        ]
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
        *_output_lines(report),
        "",
        "## Rejected, by stage and reason",
        "",
        "Stages in the order they run; in each, the largest loss first.",
        "",
        "| stage | reason | documents | share of input |",
        "|---|---|---:|---:|",
    ]
    for stage in _pipeline_order(report["rejected"]):
        reasons = report["rejected"][stage]
        subtotal = sum(reasons.values())
        lines.append(f"| **{stage}** | all reasons | **{subtotal:,}** | **{_share(subtotal, t['input_docs'])}** |")
        for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"| {stage} | {reason} | {n:,} | {_share(n, t['input_docs'])} |")
    if not report["rejected"]:
        lines.append("| | (none) | 0 | |")
    lines += ["", "## Quarantined, by reason", "", "| reason | documents |", "|---|---:|"]
    for reason, n in sorted(report["quarantined"].items()):
        lines.append(f"| {reason} | {n:,} |")
    unknown = [s for s in report["quarantined_shards"] if s["documents"] is None]
    for reason in sorted({s["reason"] for s in unknown}):
        shards = sum(1 for s in unknown if s["reason"] == reason)
        lines.append(f"| {reason} | unknown ({shards:,} shard{'s' if shards != 1 else ''}) |")
    if not report["quarantined"] and not unknown:
        lines.append("| (none) | 0 |")
    if report["quarantined_shards"]:
        lines += ["", "Whole shards quarantined (see `quarantine/`):", ""]
        for shard in report["quarantined_shards"]:
            docs = "unknown" if shard["documents"] is None else f"{shard['documents']:,}"
            lines.append(
                f"- `{shard['uri']}` ({_mb(shard['bytes'])}): {shard['reason']}: {shard['detail']} (documents: {docs})"
            )
    for section in built.sections:
        if section.markdown:
            lines += ["", *section.markdown]
    index = report.get("dedup_index")
    if index and index["indexed_shards"]:
        lines += [
            "",
            f"Dedup was incremental: new shards ({index['new_shards']:,}) were deduplicated against the "
            f"index of shards kept by earlier runs ({index['indexed_shards']:,}), whose decisions stand.",
        ]
    if report.get("examples"):
        lines += _examples_lines(report["examples"], report["rejected"])
    if report.get("generation"):
        lines += _generation_lines(report["generation"])
    if report.get("chat"):
        lines += _chat_lines(report["chat"])
    mix = report.get("mixture")
    if mix and mix["domains"]:
        unit = mix["unit"]
        realized_total = sum(d[f"realized_{unit}"] for d in mix["domains"].values()) or 1
        lines += [
            "",
            f"## Mixture ({'tokens' if unit == 'tokens' else 'text bytes'})",
            "",
            f"Budget {mix[f'budget_{unit}']:,.0f} {unit}; at most {mix['max_epochs']:g} copies of a document.",
            "",
            "| domain | available | target share | target | copies per document | realized | realized share |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, d in mix["domains"].items():
            realized = d[f"realized_{unit}"]
            lines.append(
                f"| {name} | {d[f'available_{unit}']:,} | {d['target_weight']:.2%} | {d[f'target_{unit}']:,.0f} "
                f"| {d['rate']:.3f} | {realized:,} | {realized / realized_total:.2%} |"
            )
        for note in mix["notes"]:
            lines.append(f"\n**Note:** {note}.")
        if mix.get("synthetic_domains"):
            lines.append(
                f"\nSynthetic ({', '.join(mix['synthetic_domains'])}): {mix['synthetic_share']:.1%} of the output; "
                f"real: {1 - mix['synthetic_share']:.1%}." + _real_floor_sentence(mix)
            )
        for warning in mix.get("warnings", []):
            lines.append(f"\n**Warning:** {warning}.")
        if mix.get("synthetic_vs_real"):
            lines += comparison_lines(mix["synthetic_vs_real"])
    shards = report.get("output_shards")
    if shards and shards["count"]:
        unit = report["mixture"]["unit"]
        lines += [
            "",
            f"Output shards: {shards['count']:,}, {unit} per shard min {shards[f'min_{unit}']:,}, "
            f"median {shards[f'median_{unit}']:,}, max {shards[f'max_{unit}']:,}.",
        ]
    lines += [
        "",
        "## Phases",
        "",
        "Peak RSS: of any one Refinery or Ray process on this machine while the phase ran.",
        "",
        "| phase | wall s | documents | docs/s | MB/s | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase in report["phases"]:
        if phase["docs_per_s"] is None:
            rates = "reused | reused"
        else:
            rates = f"{phase['docs_per_s']:,.0f} | {phase['mb_per_s']:.2f}"
        peak = _mb(phase.get("peak_rss_bytes")) if phase.get("peak_rss_bytes") else "n/a"
        lines.append(f"| {phase['name']} | {phase['seconds']:.1f} | {phase['docs']:,} | {rates} | {peak} |")
    steps = report.get("annotate_steps")
    if steps:
        total = sum(s["seconds"] for s in steps) or 1e-9
        lines += [
            "",
            "### Annotate, by step",
            "",
            "Worker seconds summed over every unit (reused units count what they took then); MB/s is the "
            "input's text over the step's seconds, per worker. The slowest step is where cores go.",
            "",
            "| step | worker s | share | MB/s per worker |",
            "|---|---:|---:|---:|",
        ]
        for step, seconds in ((s["step"], s["seconds"]) for s in steps):
            rate = t["input_bytes"] / seconds / 1e6 if seconds else 0.0
            lines.append(f"| {step} | {seconds:,.2f} | {seconds / total:.1%} | {rate:,.1f} |")
    private = (
        f" ({_mb(report['peak_private_bytes'])} without shared pages: the object store's, mapped by the workers "
        "that used it)"
        if report.get("peak_private_bytes")
        else ""
    )
    lines += [
        "",
        f"Peak RSS of any Refinery or Ray process on this machine: {_mb(report['peak_rss_bytes'])}{private}.",
        "",
    ]
    unbalanced = [row for row in report["shards"] if not row["balanced"]]
    if unbalanced:
        lines += ["## Unbalanced shards", ""] + [f"- `{row['uri']}`" for row in unbalanced] + [""]
    return "\n".join(lines)
