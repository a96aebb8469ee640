"""Small SVG charts drawn by hand: no library, no script, a few hundred bytes each.

Pure functions from numbers to markup; every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

BAR_HEIGHT = 18
BAR_GAP = 6
LABEL_WIDTH = 180
CHART_WIDTH = 520
COLOURS = {"applied": "#2e7d32", "failed": "#c62828", "other": "#1565c0"}


def bars(items: Sequence[tuple[str, int]], *, title: str, colour: str = "#1565c0") -> str:
    """A horizontal bar chart of (label, count), longest bar = the largest count."""
    if not items:
        return f'<p class="empty">{escape(title)}: nothing yet.</p>'
    largest = max(count for _, count in items) or 1
    span = CHART_WIDTH - LABEL_WIDTH - 50
    height = len(items) * (BAR_HEIGHT + BAR_GAP)
    rows = []
    for index, (label, count) in enumerate(items):
        y = index * (BAR_HEIGHT + BAR_GAP)
        width = max(1, round(span * count / largest)) if count else 0
        rows.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR_HEIGHT}" '
            f'fill="{colour}"/>'
            f'<text x="{LABEL_WIDTH + width + 4}" y="{y + 13}">{count}</text>'
        )
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" font-size="12">'
        f"<title>{escape(title)}</title>{''.join(rows)}</svg>"
    )


def progress(
    series: dict[str, Sequence[tuple[datetime, int]]],
    *,
    title: str,
    markers: Sequence[tuple[datetime, str]] = (),
    width: int = CHART_WIDTH,
    height: int = 160,
) -> str:
    """Cumulative counts over time, one step line per series, with labelled event markers."""
    points = [t for values in series.values() for t, _ in values] + [t for t, _ in markers]
    if not points:
        return f'<p class="empty">{escape(title)}: no reports yet.</p>'
    start, end = min(points), max(points)
    duration = (end - start).total_seconds() or 1.0
    top = max((n for values in series.values() for _, n in values), default=0) or 1
    left, bottom, plot_w, plot_h = 36, height - 18, width - 46, height - 34

    def x(at: datetime) -> float:
        return round(left + plot_w * (at - start).total_seconds() / duration, 1)

    def y(count: int) -> float:
        return round(bottom - plot_h * count / top, 1)

    parts = [
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{y(top) + 4}" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end">0</text>',
    ]
    for at, label in markers:
        # Labels in the right half end at their line, so they stay inside the chart.
        right = x(at) > left + plot_w / 2
        anchor, shift = ("end", -3) if right else ("start", 3)
        parts.append(
            f'<line x1="{x(at)}" y1="{bottom}" x2="{x(at)}" y2="{bottom - plot_h}" '
            f'stroke="#aaa" stroke-dasharray="3,3"/>'
            f'<text x="{x(at) + shift}" y="{bottom - plot_h + 10}" text-anchor="{anchor}" '
            f'fill="#555">{escape(label)}</text>'
        )
    for name, values in series.items():
        if not values:
            continue
        path = [f"M{x(start)},{y(0)}"]
        for at, count in values:
            path.append(f"H{x(at)}V{y(count)}")
        path.append(f"H{x(end)}")
        colour = COLOURS.get(name, COLOURS["other"])
        parts.append(f'<path d="{"".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>')
    legend = "".join(
        f'<text x="{left + 8 + i * 90}" y="{height - 2}" fill="{COLOURS.get(n, COLOURS["other"])}">'
        f"{escape(n)}</text>"
        for i, n in enumerate(series)
    )
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-size="11">'
        f"<title>{escape(title)}</title>{''.join(parts)}{legend}</svg>"
    )


def cumulative(times: Sequence[datetime]) -> list[tuple[datetime, int]]:
    """(time, how many so far) for sorted event times."""
    return [(at, index + 1) for index, at in enumerate(sorted(times))]
