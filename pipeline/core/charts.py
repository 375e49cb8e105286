"""Charts of the run report as Vega-Lite specifications (plain JSON).

One specification serves both outputs: ``report.html`` draws it in the browser with the
Vega runtime embedded in the page, and ``report.md`` shows the SVG that ``vl-convert``
renders from it offline. A chart holds its own data (``data.values``), so what it shows can
be checked against the report's counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WIDTH = 640


@dataclass
class Chart:
    key: str
    """Stable name: the HTML element's id and the SVG file's name."""
    title: str
    spec: dict[str, Any]
    caption: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = {
            **({} if "facet" in self.spec else {"width": WIDTH}),
            "config": {"view": {"stroke": None}, "axis": {"labelLimit": 260}},
            **self.spec,
            "data": {"values": self.data},
        }


def bars(
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    category: str,
    value: str,
    *,
    color: str | None = None,
    value_title: str | None = None,
    caption: str = "",
    tooltip: list[str] | None = None,
    sort: list[str] | None = None,
    value_format: str = ",~f",
) -> Chart:
    """Horizontal bars of ``value`` per ``category`` (stacked by ``color`` when given), in
    the rows' order unless ``sort`` names one."""
    order = sort if sort is not None else list(dict.fromkeys(r[category] for r in rows))
    encoding: dict[str, Any] = {
        "y": {"field": category, "type": "nominal", "sort": order, "title": None},
        "x": {"field": value, "type": "quantitative", "title": value_title or value, "axis": {"format": value_format}},
        "tooltip": [
            {"field": name, "type": "quantitative" if isinstance(rows[0].get(name), (int, float)) else "nominal",
             **({"format": value_format} if name == value else {})}
            for name in (tooltip or [category, *([color] if color else []), value])
        ] if rows else [],
    }  # fmt: skip
    if color:
        encoding["color"] = {
            "field": color,
            "type": "nominal",
            "title": color.replace("_", " "),
            "scale": {"scheme": "tableau20"},
        }
    spec = {"mark": {"type": "bar", "tooltip": True}, "encoding": encoding, "height": {"step": 22}}
    return Chart(key, title, spec, caption, rows)


def grouped_bars(
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    category: str,
    group: str,
    value: str,
    *,
    value_title: str | None = None,
    caption: str = "",
    value_format: str = ",~f",
) -> Chart:
    """Bars of ``value`` per ``category``, one bar per ``group`` side by side."""
    spec = {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": category, "type": "nominal", "sort": list(dict.fromkeys(r[category] for r in rows)), "title": None},
            "yOffset": {"field": group, "type": "nominal"},
            "x": {"field": value, "type": "quantitative", "title": value_title or value, "axis": {"format": value_format}},
            "color": {"field": group, "type": "nominal", "title": None},
            "tooltip": [
                {"field": category, "type": "nominal"},
                {"field": group, "type": "nominal"},
                {"field": value, "type": "quantitative", "format": value_format},
            ],
        },
        "height": {"step": 14},
    }  # fmt: skip
    return Chart(key, title, spec, caption, rows)


def histogram(
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    value: str,
    count: str,
    *,
    group: str | None = None,
    value_title: str | None = None,
    caption: str = "",
    log_x: bool = False,
    rules: list[dict[str, Any]] | None = None,
) -> Chart:
    """Counts per value (bucket representatives), as bars or, per ``group``, lines; ``rules``
    are vertical marks (cut points) with a ``value`` and a ``label``."""
    x = {
        "field": value,
        "type": "quantitative",
        "title": value_title or value,
        **({"scale": {"type": "log"}} if log_x else {}),
    }
    color = {"color": {"field": group, "type": "nominal"}} if group else {}
    layers: list[dict[str, Any]] = [{
        "mark": {"type": "line" if group else "bar", "tooltip": True, **({"point": True} if group else {})},
        "encoding": {"x": x, "y": {"field": count, "type": "quantitative", "title": count}, **color},
    }]  # fmt: skip
    if rules:
        layers.append(
            {
                "data": {"values": rules},
                "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#b22"},
                "encoding": {"x": {"field": "value", "type": "quantitative"}, "tooltip": [{"field": "label"}, {"field": "value"}]},
            }
        )  # fmt: skip
    return Chart(key, title, {"layer": layers, "height": 220}, caption, rows)


def histograms(
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    value: str,
    count: str,
    facet: str,
    *,
    caption: str = "",
    rules: list[dict[str, Any]] | None = None,
) -> Chart:
    """One small histogram per ``facet`` value, each with its own scales; ``rules`` are
    vertical marks (cut points) with the ``facet`` value, a ``value`` and a ``label``."""
    data = [{**row, "mark": "count"} for row in rows] + [{**rule, "mark": "rule"} for rule in rules or []]
    layers = [
        {
            "transform": [{"filter": "datum.mark === 'count'"}],
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "x": {"field": value, "type": "quantitative", "title": None},
                "y": {"field": count, "type": "quantitative", "title": count},
            },
        },
        {
            "transform": [{"filter": "datum.mark === 'rule'"}],
            "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#b22"},
            "encoding": {
                "x": {"field": "value", "type": "quantitative"},
                "tooltip": [{"field": "label"}, {"field": "value"}],
            },
        },
    ]
    spec = {
        "facet": {"field": facet, "type": "nominal", "title": None},
        "columns": 3,
        "spec": {"layer": layers, "width": WIDTH // 3 - 40, "height": 110},
        "resolve": {"scale": {"x": "independent", "y": "independent"}},
    }
    return Chart(key, title, spec, caption, data)
