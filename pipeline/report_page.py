"""``report.html``: the run report as one self-contained page with charts, and the same
charts as SVG files beside ``report.md``.

Charts are Vega-Lite specifications (``pipeline.core.charts``) built from ``report.json``
alone, so ``refinery report`` rebuilds the page of any earlier run: the run's own charts
here, each capability's from its ``report_charts``. The page embeds the Vega runtime
(``vl-convert``'s bundle) and every chart's data; it loads nothing from the network.
"""

from __future__ import annotations

import functools
import html
import json
import re
from typing import Any

from pipeline.core import storage
from pipeline.core.charts import Chart, bars, grouped_bars, histogram
from pipeline.core.layout import OutputLayout
from pipeline.stages.registry import capabilities

CHARTS_DIR = "report_charts"
"""Beside ``report.md``: one SVG per chart."""
VEGA_LITE_VERSION = "5.20"
MAX_SNAPSHOTS = 50
"""The history chart's last snapshots of an output."""


def funnel_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the input documents went: input, each stage's rejects by reason (in the order
    documents meet the stages), quarantine, kept. The rows after ``input`` sum to it."""
    from pipeline.report import _pipeline_order

    t = report["totals"]
    rows = [{"step": "input", "reason": "input", "documents": t["input_docs"]}]
    rejected = report["rejected"]
    for stage in _pipeline_order(rejected):
        for reason, n in sorted(rejected[stage].items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append({"step": f"rejected: {stage}", "reason": reason, "documents": n})
    for reason, n in sorted(report["quarantined"].items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append({"step": "quarantined", "reason": reason, "documents": n})
    rows.append({"step": "kept", "reason": "kept", "documents": t["kept_docs"]})
    return rows


def _funnel(report: dict[str, Any]) -> Chart:
    t, unit = report["totals"], report.get("mixture", {}).get("unit", "tokens")
    packed = (
        f"{t['tokens']:,} tokens packed in {t['output_shards']:,} shards"
        if unit == "tokens"
        else f"{t['output_documents']:,} document copies written in {t['output_shards']:,} shards"
    )
    balance = "counts balance" if report["balance"]["ok"] else "COUNTS DO NOT BALANCE"
    return bars(
        "funnel",
        "Where the documents went",
        funnel_rows(report),
        "step",
        "documents",
        color="reason",
        caption=(
            f"{t['input_docs']:,} in = {t['kept_docs']:,} kept + {t['rejected_docs']:,} rejected + "
            f"{t['quarantined_docs']:,} quarantined ({balance}); {packed}. Hover a bar for its reason and count."
        ),
    )


def _mixture(report: dict[str, Any]) -> list[Chart]:
    mix = report.get("mixture")
    if not mix or not mix["domains"]:
        return []
    unit = mix["unit"]
    realized_total = sum(d[f"realized_{unit}"] for d in mix["domains"].values()) or 1
    shares, copies = [], []
    for name, d in mix["domains"].items():
        shares.append({"domain": name, "side": "target", "share": d["target_weight"]})
        shares.append({"domain": name, "side": "realized", "share": d[f"realized_{unit}"] / realized_total})
        copies.append({"domain": name, "copies per document": d["rate"], "documents": d["documents"]})
    charts = [
        grouped_bars(
            "mixture", f"Mixture: target and realized share of the output ({unit})", shares, "domain", "side",
            "share", value_format=".1%",
        ),
        bars(
            "copies", "Copies per document, by domain (the mixture's sampling rate)", copies, "domain",
            "copies per document", value_format=".2f", tooltip=["domain", "copies per document", "documents"],
        ),
    ]  # fmt: skip
    sizes = report.get("output_shards", {}).get("sizes")
    if sizes:
        rows = [{"shard": i, unit: n} for i, n in enumerate(sizes)]
        chart = Chart(
            "shard_sizes",
            f"Output shards: {unit} per shard",
            {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": unit, "type": "quantitative", "bin": {"maxbins": 30}, "title": f"{unit} per shard"},
                    "y": {"aggregate": "count", "type": "quantitative", "title": "shards"},
                },
                "height": 160,
            },
            data=rows,
        )
        charts.append(chart)
    comparison = mix.get("synthetic_vs_real")
    if comparison:
        rows = []
        for side, s in sorted(comparison["sides"].items(), reverse=True):  # synthetic, then real
            if s.get("distinct_ngrams"):
                rows.append({"measure": f"distinct {comparison['ngram']}-grams per {comparison['ngram']}-gram",
                             "side": side, "value": s["distinct_ngrams"]["ratio"]})  # fmt: skip
            rows.append(
                {"measure": "share of the 10 most frequent openings", "side": side, "value": s["top_openings_share"]}
            )
            rows.append({"measure": "removed as duplicates", "side": side, "value": s["duplicate_rate"]})
            within = s.get("duplicates_of", {}).get("synthetic")
            if side == "synthetic":
                rows.append({"measure": "duplicates within the synthetic set", "side": side,
                             "value": within["rate"] if within else 0.0})  # fmt: skip
        charts.append(
            grouped_bars(
                "synthetic_vs_real", "Synthetic against real data", rows, "measure", "side", "value",
                value_format=".1%", caption="Low distinct n-grams or a few openings holding many documents: one pattern dominates.",
            )
        )  # fmt: skip
    return charts


def _lengths(report: dict[str, Any]) -> list[Chart]:
    lengths = report.get("lengths") or {}
    charts = []
    chars = [
        {"documents of": side, "characters": value, "documents": n}
        for side, key in (("input", "input_chars"), ("kept", "kept_chars"))
        for value, n in lengths.get(key, [])
    ]
    if chars:
        charts.append(
            histogram(
                "lengths_chars", "Document length in characters: input and kept (log scale)", chars, "characters",
                "documents", group="documents of", log_x=True,
                caption="Input: the valid documents read; kept: those every filter and dedup kept, before the "
                "mixture samples them. Buckets about 10% wide.",
            )
        )  # fmt: skip
    rate = lengths.get("input_tokens_sample_rate")
    tokens = [
        {"documents of": "input (sampled)", "tokens": value, "share": n / sampled}
        for sampled in [sum(n for _, n in lengths.get("input_tokens_sample", []))]
        for value, n in lengths.get("input_tokens_sample", [])
    ]
    kept = sum(n for _, n in lengths.get("kept_tokens", []))
    tokens += [
        {"documents of": "kept", "tokens": value, "share": n / kept} for value, n in lengths.get("kept_tokens", [])
    ]
    if tokens:
        charts.append(
            histogram(
                "lengths_tokens", "Document length in tokens: input and kept (log scale)", tokens, "tokens",
                "share", group="documents of", log_x=True,
                caption=(f"Input: a seeded sample of one valid document in {rate}, tokenized in annotate; " if rate else "")
                + "kept: every document kept, before the mixture samples them. Shares of each side's documents; "
                "buckets about 10% wide.",
            )
        )  # fmt: skip
    return charts


def _phases(report: dict[str, Any]) -> list[Chart]:
    rows = [
        {
            "phase": p["name"],
            "seconds": p["seconds"],
            "documents per s": p["docs_per_s"] if p["docs_per_s"] is not None else 0,
            "peak RSS MB": round((p.get("peak_rss_bytes") or 0) / 1e6, 1),
            "work": "reused" if p["docs_per_s"] is None else "done",
        }
        for p in report["phases"]
    ]
    if not rows:
        return []
    return [
        bars(
            "phase_seconds", "Phases: wall time", rows, "phase", "seconds", color="work", value_format=",.1f",
            tooltip=["phase", "seconds", "documents per s", "peak RSS MB", "work"],
            caption="Reused: committed by an earlier run of the same work and not redone.",
        ),
        bars(
            "phase_memory", "Phases: peak memory of any one process (RSS)", rows, "phase", "peak RSS MB",
            value_format=",.0f", tooltip=["phase", "peak RSS MB", "seconds"],
        ),
    ]  # fmt: skip


def _history(history: list[dict[str, Any]]) -> list[Chart]:
    if len(history) < 2:
        return []
    rows, tokens = [], []
    for entry in history:
        t = entry["totals"]
        for kind, key in (("kept", "kept_docs"), ("rejected", "rejected_docs"), ("quarantined", "quarantined_docs")):
            rows.append({"snapshot": entry["snapshot"], "documents": t[key], "kind": kind})
        tokens.append({"snapshot": entry["snapshot"], "tokens": t["tokens"], "input documents": t["input_docs"]})
    return [
        bars("history_documents", "Snapshots of this output: documents", rows, "snapshot", "documents", color="kind",
             caption="Each refresh's snapshot, oldest first: what it read and where the documents went."),
        bars("history_tokens", "Snapshots of this output: tokens written", tokens, "snapshot", "tokens",
             tooltip=["snapshot", "tokens", "input documents"]),
    ]  # fmt: skip


def charts(report: dict[str, Any], history: list[dict[str, Any]] = ()) -> list[Chart]:
    """Every chart of the report: the run's own, then each capability's."""
    out = [_funnel(report), *_lengths(report), *_mixture(report), *_phases(report), *_history(list(history))]
    for cap in capabilities():
        out += cap.report_charts(report)
    return out


def snapshot_history(layout: OutputLayout, options: storage.StorageOptions | None) -> list[dict[str, Any]]:
    """The totals of the output's snapshots that have a report, oldest first (the last
    ``MAX_SNAPSHOTS``)."""
    found = []
    for snapshot in storage.list_dirs(layout.snapshots_dir, options)[-MAX_SNAPSHOTS:]:
        uri = layout.snapshot_report(snapshot, "json")
        try:
            data = json.loads(storage.read_bytes(uri, options))
        except (OSError, ValueError):
            continue  # a snapshot being written, or one from before reports were kept
        if "totals" in data:
            found.append({"snapshot": snapshot, "totals": data["totals"]})
    return sorted(found, key=lambda e: e["snapshot"])[-MAX_SNAPSHOTS:]


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.balance { padding: .6em 1em; border-radius: 6px; margin: 1em 0; }
.ok { background: #e8f5e9; } .bad { background: #fdecea; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figcaption { color: #555; margin: .3em 0 .8em; }
.chart { min-height: 60px; }
.example { margin: .6em 0 1em; } .meta { color: #555; font-size: .9em; }
blockquote { margin: .3em 0; padding: .4em .8em; background: #f7f7f7; border-left: 3px solid #ccc; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: .8em; } mark { background: #fff3a8; }
.of { color: #777; font-weight: normal; font-size: .85em; }
"""


def _totals_table(report: dict[str, Any]) -> str:
    t = report["totals"]
    rows = [
        ("input documents", t["input_docs"]),
        ("kept", t["kept_docs"]),
        ("rejected", t["rejected_docs"]),
        ("quarantined", t["quarantined_docs"]),
        ("document copies written", t["document_copies"]),
        ("tokens", t["tokens"]),
        ("output shards", t["output_shards"]),
    ]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td class=n>{v:,}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _rejects_table(report: dict[str, Any]) -> str:
    from pipeline.report import _pipeline_order

    rejected = report["rejected"]
    if not rejected:
        return "<p>No document was rejected.</p>"
    rows = []
    for stage in _pipeline_order(rejected):
        for reason, n in sorted(rejected[stage].items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append(f"<tr><td>{html.escape(stage)}</td><td>{html.escape(reason)}</td><td class=n>{n:,}</td></tr>")
    return "<table><tr><th>stage</th><th>reason</th><th>documents</th></tr>" + "".join(rows) + "</table>"


def _shared_words(text: str, other: str, n: int = 3) -> str:
    """``text`` as HTML with the words of every ``n``-gram it shares with ``other`` marked."""
    words = re.findall(r"\S+", text)
    norm = [re.sub(r"\W+", "", w.lower()) for w in words]
    other_norm = [re.sub(r"\W+", "", w.lower()) for w in re.findall(r"\S+", other)]
    shared = {tuple(other_norm[i : i + n]) for i in range(len(other_norm) - n + 1)}
    marked = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(norm[i : i + n]) in shared:
            for j in range(i, i + n):
                marked[j] = True
    return " ".join(f"<mark>{html.escape(w)}</mark>" if m else html.escape(w) for w, m in zip(words, marked))


def _examples_html(report: dict[str, Any]) -> str:
    from pipeline.report import _pipeline_order

    examples = report.get("examples")
    if examples is None:
        return ""
    parts = [
        '<h2 id="examples">Examples of what each rule did</h2>',
        "<p>A few documents per stage and reason, chosen by the job's seed: the start of each text "
        "(PII scrubbed; none for contamination) and what the stage recorded. A duplicate stands beside "
        "the document kept instead, or a near duplicate beside the document it was matched to (with "
        "their similarity) when that one is not the survivor, the text they share marked.</p>",
    ]
    rejected = report["rejected"]
    if not examples and not rejected:
        parts.append("<p>No document was rejected.</p>")
    for stage in _pipeline_order({**rejected, **examples}):
        reasons = sorted(set(rejected.get(stage, {})) | set(examples.get(stage, {})))
        for reason in reasons:
            chosen = examples.get(stage, {}).get(reason, [])
            total = rejected.get(stage, {}).get(reason)
            parts.append(
                f'<section class="examples" data-stage="{html.escape(stage)}" data-reason="{html.escape(reason)}">'
                f"<h3>{html.escape(stage)} / {html.escape(reason)}"
                + (f' <span class="of">({len(chosen)} of {total:,})</span>' if total else "")
                + "</h3>"
            )
            if not chosen:
                parts.append("<p class=meta>No example kept (the mixture's sampling, or an earlier run's work).</p>")
            for example in chosen:
                detail = "; ".join(
                    f"{html.escape(k)}: {html.escape(json.dumps(v, ensure_ascii=False))}"
                    for k, v in example["detail"].items()
                    if v is not None
                )
                meta = f"<div class=meta><code>{html.escape(str(example['id']))}</code> {detail}</div>"
                survivor, matched = example.get("survivor"), example.get("matched")
                text = example["text"]
                beside = matched or survivor
                if beside and text:
                    similarity = beside.get("similarity", example["detail"].get("similarity"))
                    label = "matched to" if matched else "kept instead"
                    label += f" (similarity {similarity})" if similarity is not None else ""
                    body = (
                        f"<div class=pair><blockquote>{_shared_words(text, beside['text'])}</blockquote>"
                        f"<blockquote><div class=meta>{label}: <code>{html.escape(str(beside['id']))}</code></div>"
                        f"{_shared_words(beside['text'], text)}</blockquote></div>"
                    )
                    if matched and survivor:
                        body += (
                            f"<blockquote class=survivor><div class=meta>kept instead, at the end of the chain "
                            f"of matches: <code>{html.escape(str(survivor['id']))}</code></div>"
                            f"{_shared_words(survivor['text'], text)}</blockquote>"
                        )
                else:
                    body = f"<blockquote>{html.escape(text)}</blockquote>" if text else ""
                parts.append(f'<div class="example">{meta}{body}</div>')
            parts.append("</section>")
    return "".join(parts)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


@functools.cache
def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (built by vl-convert: 1.5 s, once per process)."""
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION).replace("</script", "<\\/script")


def render_page(report: dict[str, Any], chart_list: list[Chart]) -> str:
    balance_ok = report["balance"]["ok"]
    figures = "".join(
        f'<figure id="figure-{c.key}"><h3>{html.escape(c.title)}</h3><div class="chart" id="chart-{c.key}"></div>'
        f"<figcaption>{html.escape(c.caption)}</figcaption></figure>"
        for c in chart_list
    )
    specs = {c.key: c.spec for c in chart_list}
    bundle = _vega_bundle()
    t = report["totals"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<title>Refinery run report: {html.escape(report["job"])}</title><style>{_STYLE}</style></head>
<body>
<h1>Refinery run report: {html.escape(report["job"])}</h1>
<p>Snapshot {html.escape(str(report.get("snapshot") or ""))} · config {html.escape(report["config_hash"])}</p>
<div class="balance {"ok" if balance_ok else "bad"}" id="balance">
{"Counts balance" if balance_ok else "Counts do NOT balance"}: {t["input_docs"]:,} in = {t["kept_docs"]:,} kept +
{t["rejected_docs"]:,} rejected + {t["quarantined_docs"]:,} quarantined.</div>
<h2>Totals</h2>{_totals_table(report)}
<h2>Charts</h2>{figures}
<h2 id="rejects">Rejects by stage and reason</h2>{_rejects_table(report)}
{_examples_html(report)}
<script>{bundle}</script>
<script>
const specs = {_script_json(specs)};
window.chartsDrawn = Promise.all(Object.entries(specs).map(([key, spec]) =>
  vegaEmbed("#chart-" + key, spec, {{actions: false, renderer: "svg"}})));
</script>
</body></html>
"""


def chart_svgs(chart_list: list[Chart]) -> dict[str, str]:
    import vl_convert

    return {c.key: vl_convert.vegalite_to_svg(c.spec, vl_version=VEGA_LITE_VERSION) for c in chart_list}


def markdown_images(chart_list: list[Chart]) -> list[str]:
    """report.md's lines that show the charts (the SVGs in ``CHARTS_DIR``)."""
    lines = ["", "## Charts", ""]
    for c in chart_list:
        lines += [f"![{c.title}]({CHARTS_DIR}/{c.key}.svg)", ""]
    return lines


def _run_charts(layout: OutputLayout, report: dict[str, Any], options: storage.StorageOptions | None) -> list[Chart]:
    """The report's charts, its snapshot shown after the output's earlier ones."""
    snapshot = report.get("snapshot")
    # the snapshots before this report's (a rebuilt older page does not show later ones)
    history = [h for h in snapshot_history(layout, options) if not snapshot or h["snapshot"] < snapshot]
    if snapshot:
        history = sorted([*history, {"snapshot": snapshot, "totals": report["totals"]}], key=lambda h: h["snapshot"])
    return charts(report, history)


def _write_page(folder: str, report: dict[str, Any], chart_list: list[Chart], options) -> str:
    for key, svg in chart_svgs(chart_list).items():
        storage.write_bytes(storage.join(folder, CHARTS_DIR, f"{key}.svg"), svg.encode(), options)
    page_uri = storage.join(folder, "report.html")
    storage.write_bytes(page_uri, render_page(report, chart_list).encode(), options)
    return page_uri


def write_report(
    layout: OutputLayout, report: dict[str, Any], markdown: str, options: storage.StorageOptions | None, charts: bool
) -> str | None:
    """``report.json`` and ``report.md`` at the output's root and in the report's snapshot;
    with ``charts``, also ``report.html`` and the chart SVGs (shown by ``report.md``).
    Returns the root page's URI (None without charts)."""
    chart_list = _run_charts(layout, report, options) if charts else []
    text = markdown.rstrip("\n") + "\n" + ("\n".join(markdown_images(chart_list)) if chart_list else "")
    snapshot = report.get("snapshot")
    pages = []
    for folder in [layout.root] + ([layout.snapshot_dir(snapshot)] if snapshot else []):
        storage.write_json(storage.join(folder, "report.json"), report, options)
        storage.write_bytes(storage.join(folder, "report.md"), text.encode(), options)
        if charts:
            pages.append(_write_page(folder, report, chart_list, options))
        else:  # an earlier run's page would not be this report's
            storage.remove_tree(storage.join(folder, "report.html"), options)
            storage.remove_tree(storage.join(folder, CHARTS_DIR), options)
    return pages[0] if pages else None


def rebuild_page(output: str, snapshot: str | None, options: storage.StorageOptions | None) -> str:
    """``refinery report``: the page (and chart SVGs) of an output's latest run or of one
    snapshot, rebuilt from its ``report.json``; returns the page's URI."""
    layout = OutputLayout(output)
    source = layout.snapshot_report(snapshot, "json") if snapshot else layout.report_json
    if not storage.exists(source, options):
        where = f"snapshot {snapshot} of {output}" if snapshot else output
        raise FileNotFoundError(f"no report.json in {where} ({source}): is it a Refinery output whose run finished?")
    report = json.loads(storage.read_bytes(source, options))
    folder = layout.snapshot_dir(snapshot) if snapshot else layout.root
    return _write_page(folder, report, _run_charts(layout, report, options), options)
