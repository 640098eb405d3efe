"""``soma slo report --html``: one self-contained HTML page, each SLO's status and its error
budget over time drawn as an inline SVG line chart (no scripts, no external files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from somaagent.sre.slo.maths import format_number, format_percent
from somaagent.sre.slo.status import SLOStatus, TrendPoint

__all__ = ["render_html", "trend_svg"]

_COLOURS = {
    "healthy": "#1a7f37",
    "at-risk": "#bf8700",
    "violated": "#cf222e",
    "no-data": "#6e7781",
    "unknown": "#6e7781",
}
_W, _H, _PAD = 640, 200, 40

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 760px; color: #1f2328; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 2rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #d0d7de; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { color: #fff; border-radius: 1em; padding: 0 .6em; font-size: .85em; }
.muted { color: #6e7781; } svg { background: #f6f8fa; border-radius: 6px; }
"""


def _x(at: datetime, start: float, span: float) -> float:
    return _PAD + (at.timestamp() - start) / span * (_W - 2 * _PAD)


def trend_svg(points: Sequence[TrendPoint], *, title: str) -> str:
    """An SVG chart of the budget remaining (100% at the top, 0% marked); gaps for no data."""
    known = [p for p in points if p.remaining is not None]
    label = escape(title)
    if not known:
        return (
            f'<svg role="img" aria-label="{label}" width="{_W}" height="60" '
            f'xmlns="http://www.w3.org/2000/svg"><text x="{_PAD}" y="35" fill="#6e7781">'
            "no data in this range</text></svg>"
        )
    values = [p.remaining for p in known if p.remaining is not None]
    low = min(0.0, *values)
    high = max(1.0, *values)
    start = points[0].at.timestamp()
    span = max(1.0, points[-1].at.timestamp() - start)

    def y(value: float) -> float:
        return _PAD / 2 + (high - value) / (high - low) * (_H - _PAD)

    segments: list[list[str]] = [[]]
    for point in points:
        if point.remaining is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{_x(point.at, start, span):.1f},{y(point.remaining):.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{" ".join(s)}"/>'
        for s in segments
        if s
    )
    zero, full = y(0.0), y(1.0)
    first = escape(points[0].at.strftime("%Y-%m-%d %H:%M"))
    last = escape(points[-1].at.strftime("%Y-%m-%d %H:%M"))
    return (
        f'<svg role="img" aria-label="{label}" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>"
        f'<rect width="{_W}" height="{_H}" rx="6" fill="#f6f8fa"/>'
        f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{full:.1f}" y2="{full:.1f}" stroke="#d0d7de"/>'
        f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#cf222e" '
        'stroke-dasharray="4 3"/>'
        f'<text x="4" y="{full + 4:.1f}" font-size="11" fill="#6e7781">100%</text>'
        f'<text x="4" y="{zero + 4:.1f}" font-size="11" fill="#cf222e">0%</text>'
        f"{lines}"
        f'<text x="{_PAD}" y="{_H - 4}" font-size="11" fill="#6e7781">{first}</text>'
        f'<text x="{_W - _PAD}" y="{_H - 4}" font-size="11" fill="#6e7781" '
        f'text-anchor="end">{last} UTC</text></svg>'
    )


def _badge(status: str) -> str:
    colour = _COLOURS.get(status, "#6e7781")
    return f'<span class="badge" style="background:{colour}">{escape(status)}</span>'


def render_html(
    statuses: Sequence[SLOStatus],
    trends: Mapping[str, Sequence[TrendPoint]],
    *,
    prometheus_url: str,
    generated_at: datetime,
) -> str:
    """The report page: a summary table, then a section per SLO with its budget trend."""
    rows = "".join(
        "<tr>"
        f"<td>{escape(s.name)}</td><td>{escape(s.service)}</td>"
        f"<td class=num>{escape(format_number(s.objective))}%</td>"
        f"<td class=num>{escape(format_number(s.sli, digits=5))}"
        f"{'%' if s.sli is not None else ''}</td>"
        f"<td class=num>{escape(format_percent(s.budget.remaining))}</td>"
        f"<td>{_badge(s.status)}</td>"
        "</tr>"
        for s in statuses
    )
    sections = "".join(
        f"<h2>{escape(s.name)} {_badge(s.status)}</h2>"
        f'<p class="muted">{escape(s.description)} {escape(s.reason)}.</p>'
        + trend_svg(trends.get(s.name, []), title=f"{s.name}: error budget remaining")
        for s in statuses
    )
    stamp = escape(generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>SomaAgent SLO report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>SomaAgent SLO report</h1>"
        f'<p class="muted">From {escape(prometheus_url)} at {stamp}.</p>'
        "<table><thead><tr><th>SLO</th><th>Service</th><th>Objective</th><th>SLI</th>"
        "<th>Budget left</th><th>Status</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{sections}</body></html>\n"
    )
