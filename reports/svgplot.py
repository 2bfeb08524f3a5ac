"""Small inline-SVG charts for the HTML report: lines, steps (CDF, histogram outlines), shaded x-ranges.

Hand-rolled on purpose: the report must open with no network, and the charts we need (a few lines on linear
axes) are a page of code, smaller than any charting library we could inline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 28, 44


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""
    markers: bool = False
    dashed: bool = False
    labels: Sequence[str] = ()  # text beside each marker (e.g. the step of a sweep point)


@dataclass
class Band:
    """A shaded x-range with a label (e.g. one load step on a time axis)."""

    x0: float
    x1: float
    label: str


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    step: bool = False  # draw as a staircase (CDF, histogram outline)
    y_min_zero: bool = True
    x_integer: bool = False  # counts (runs, concurrency): no tick between two integers
    width: int = 560
    height: int = 300


def nice_ticks(lo: float, hi: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps, at least min_step apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = max((hi - lo) / max(1, count), min_step)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while len(ticks) < 50:
        ticks.append(round(value, 10))
        if value >= hi - step * 1e-9:  # the last tick covers the maximum: nothing is clipped
            break
        value += step
    return ticks


def fmt_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e9:
        return f"{value / 1e9:g}G"
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def render(chart: Chart) -> str:
    """The chart as an <svg> element; an empty chart says so instead of drawing axes over nothing."""
    w, h = chart.width, chart.height
    title = escape(chart.title)
    points = [(x, y) for s in chart.series for x, y in zip(s.xs, s.ys, strict=False) if _ok(x) and _ok(y)]
    head = f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{title}">'
    head += f'<text x="{w / 2}" y="18" text-anchor="middle" class="ct">{title}</text>'
    if not points:
        return head + f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" class="empty">no data</text></svg>'
    xs = [p[0] for p in points] + [b.x0 for b in chart.bands] + [b.x1 for b in chart.bands]
    ys = [p[1] for p in points]
    x_ticks = nice_ticks(min(xs), max(xs), min_step=1.0 if chart.x_integer else 0.0)
    y_ticks = nice_ticks(0.0 if chart.y_min_zero else min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    pw, ph = w - MARGIN_LEFT - MARGIN_RIGHT, h - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x0) / ((x1 - x0) or 1) * pw

    def sy(y: float) -> float:
        return MARGIN_TOP + ph - (y - y0) / ((y1 - y0) or 1) * ph

    parts = [head]
    for i, band in enumerate(chart.bands):
        bx0, bx1 = sx(band.x0), sx(band.x1)
        fill = "#eef3fb" if i % 2 == 0 else "#f7f2e8"
        parts.append(f'<rect x="{bx0:.1f}" y="{MARGIN_TOP}" width="{max(1.0, bx1 - bx0):.1f}" height="{ph}" fill="{fill}"/>')
        parts.append(f'<text x="{(bx0 + bx1) / 2:.1f}" y="{MARGIN_TOP + 12}" text-anchor="middle" class="bl">{escape(band.label)}</text>')
    for t in y_ticks:
        y = sy(t)
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tk">{fmt_tick(t)}</text>')
    for t in x_ticks:
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP + ph}" y2="{MARGIN_TOP + ph + 4}" class="axis"/>')
        parts.append(f'<text x="{x:.1f}" y="{MARGIN_TOP + ph + 16}" text-anchor="middle" class="tk">{fmt_tick(t)}</text>')
    parts.append(f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{pw}" height="{ph}" class="frame"/>')
    parts.append(f'<text x="{MARGIN_LEFT + pw / 2}" y="{h - 8}" text-anchor="middle" class="al">{escape(chart.x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {MARGIN_TOP + ph / 2}) rotate(-90)" text-anchor="middle" class="al">{escape(chart.y_label)}</text>'
    )
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        pts = [(sx(x), sy(y)) for x, y in zip(s.xs, s.ys, strict=False) if _ok(x) and _ok(y)]
        if not pts:
            continue
        if chart.step:
            path = [pts[0]]
            for (_, py), (nx, ny) in itertools.pairwise(pts):
                path += [(nx, py), (nx, ny)]
            pts_draw = path
        else:
            pts_draw = pts
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts_draw)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"{dash}><title>{escape(s.name)}</title></polyline>')
        if s.markers:
            for x, y in pts:
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        if s.labels:
            kept = [label for x, y, label in zip(s.xs, s.ys, s.labels, strict=False) if _ok(x) and _ok(y)]
            for (x, y), label in zip(pts, kept, strict=False):
                parts.append(f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" class="tk">{escape(label)}</text>')
        ly = MARGIN_TOP + 14 + 15 * i + (14 if chart.bands else 0)
        lx = MARGIN_LEFT + 10
        parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2.5"{dash}/>')
        parts.append(f'<text x="{lx + 21}" y="{ly}" class="lg">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes, for x higher-is-better and y lower-is-better, by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], p[1])):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return sorted(front)


def _ok(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF as a staircase starting at (min, 0)."""
    ordered = sorted(v for v in values if _ok(v))
    if not ordered:
        return [], []
    n = len(ordered)
    xs = [ordered[0], *ordered]
    ys = [0.0, *((i + 1) / n for i in range(n))]
    return xs, ys


def histogram_points(values: Sequence[float], lo: float, hi: float, bins: int) -> tuple[list[float], list[float]]:
    """Histogram outline: counts per bin as a staircase over [lo, hi]."""
    data = [v for v in values if _ok(v)]
    if not data or hi <= lo:
        return [], []
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in data:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    xs = [lo + i * width for i in range(bins)] + [hi]
    ys = [float(c) for c in counts] + [float(counts[-1])]
    return [lo, *xs], [0.0, *ys]
