"""Hand-written SVG plots (no plotting dependency): series of points with optional min-max bars,
a linear or log x axis, point labels and a legend. The SVG is self-contained and prints as is."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


@dataclass
class Point:
    x: float
    y: float
    low: float | None = None  # error bar (e.g. the minimum over repeats)
    high: float | None = None
    label: str = ""


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)
    line: bool = True  # join the points (a curve) or not (a scatter)
    hollow: bool = False  # ring markers, so a second series at the same place stays visible


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        out = [10.0 ** e * m for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
               for m in (1, 2, 5)]
        return [t for t in out if low <= t <= high] or [low, high]
    span = high - low or 1.0
    step = 10 ** math.floor(math.log10(span / 5))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= 6:
            step *= m
            break
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def svg_plot(series: Sequence[Series], title: str, x_label: str, y_label: str, log_x: bool = False,
             y_range: tuple[float, float] | None = None, x_ticks: Sequence[tuple[float, str]] | None = None,
             width: int = 640, height: int = 400) -> str:
    """The plot as an SVG document string."""
    pts = [p for s in series for p in s.points if p.x is not None and p.y is not None]
    left, right, top, bottom = 64, 24, 40, 56
    legend_h = 18 * len(series)
    plot_w, plot_h = width - left - right, height - top - bottom - legend_h
    xs = [p.x for p in pts] or [1.0]
    if log_x:
        xs = [x for x in xs if x > 0] or [1.0]
    x0, x1 = min(xs), max(xs)
    if log_x:
        x0, x1 = x0 / 1.3, x1 * 1.3
    else:
        pad = (x1 - x0) * 0.05 or 1.0
        x0, x1 = x0 - pad, x1 + pad
    ys = [v for p in pts for v in (p.y, p.low, p.high) if v is not None] or [0.0, 1.0]
    y0, y1 = y_range or (min(ys), max(ys))
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.05, y1 + 0.05
    if y_range is None:  # room around the extreme points
        pad = 0.06 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        if log_x:
            return left + plot_w * (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
        return left + plot_w * (x - x0) / (x1 - x0)

    def sy(y: float) -> float:
        return top + plot_h * (1 - (y - y0) / (y1 - y0))

    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>']
    for t in _ticks(y0, y1, False):
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t, label in (x_ticks or [(t, _fmt(t)) for t in _ticks(x0, x1, log_x)]):
        if not (x0 <= t <= x1):
            continue
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{e(label)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36}" text-anchor="middle">{e(x_label)}</text>')
    out.append(f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">{e(y_label)}</text>')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        good = [p for p in s.points if p.y is not None and (p.x > 0 or not log_x)]
        if s.line and len(good) > 1:
            path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in good)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        placed: list[tuple[float, float]] = []  # label positions so far: crowded labels move down
        for p in good:
            x, y = sx(p.x), sy(p.y)
            if p.low is not None and p.high is not None:
                out.append(f'<line x1="{x:.1f}" y1="{sy(p.low):.1f}" x2="{x:.1f}" y2="{sy(p.high):.1f}" '
                           f'stroke="{colour}" stroke-width="1.5"/>')
                for v in (p.low, p.high):
                    out.append(f'<line x1="{x - 4:.1f}" y1="{sy(v):.1f}" x2="{x + 4:.1f}" y2="{sy(v):.1f}" stroke="{colour}"/>')
            marker = f'r="6" fill="none" stroke="{colour}" stroke-width="2"' if s.hollow else f'r="4" fill="{colour}"'
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" {marker}><title>{e(s.name)}: {e(p.label or _fmt(p.x))} '
                       f'{p.y:.4f}</title></circle>')
            if p.label:
                # above the point, else below it, else further out (clear of the marker either way)
                for ly in (y - 9, y + 21, y - 23, y + 35, y - 37, y + 49):
                    if not any(abs(ly - py) < 13 and abs(x - px) < 7 * max(len(p.label), 6) for px, py in placed):
                        break
                placed.append((x, ly))
                anchor = "end" if x > left + 0.7 * plot_w else "start"
                lx = x - 8 if anchor == "end" else x + 8
                out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{colour}" text-anchor="{anchor}">{e(p.label)}</text>')
        ly = top + plot_h + 52 + 18 * i
        out.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{left + 18}" y="{ly + 1}">{e(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
