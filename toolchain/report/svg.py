"""Self-contained SVG line and bar plots (no plotting dependency), for docs and reports."""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def line_plot(series: dict[str, tuple[list[float], list[float]]], title: str, x_label: str, y_label: str,
              log2_x: bool = True, reference: tuple[str, float] | None = None, width: int = 640, height: int = 400) -> str:
    """Lines of (x, y) points; an optional horizontal reference line (label, y), e.g. the ANN's accuracy."""
    left, right, top, bottom = 60, 170, 36, 48
    xs = [x for pts in series.values() for x in pts[0]]
    ys = [y for pts in series.values() for y in pts[1]] + ([reference[1]] if reference else [])
    fx = (lambda x: math.log2(x)) if log2_x else (lambda x: x)
    x_lo, x_hi = fx(min(xs)), fx(max(xs))
    y_lo, y_hi, px, py = _scales(fx, x_lo, x_hi, ys, (left, right, top, bottom), width, height)
    out = _frame(width, height, (left, right, top, bottom), title, x_label, y_label)
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
    out += _y_grid(y_lo, y_hi, py, left, width - right, reference)
    for i, (label, (sx, sy)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(sx, sy))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in zip(sx, sy)]
        out.append(f'<text x="{width - right + 6}" y="{top + 16 * (i + 2)}" fill="{color}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _scales(fx, x_lo: float, x_hi: float, ys: list[float], margins: tuple[int, int, int, int], width: int, height: int):
    """The y range padded by 5 % and the maps from data to pixels: (y_lo, y_hi, px, py)."""
    left, right, top, bottom = margins
    y_lo, y_hi = min(ys), max(ys)
    y_pad = (y_hi - y_lo) * 0.05 or 0.01
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    px = lambda x: left + (fx(x) - x_lo) / ((x_hi - x_lo) or 1) * (width - left - right)
    py = lambda y: top + (y_hi - y) / (y_hi - y_lo) * (height - top - bottom)
    return y_lo, y_hi, px, py


def _y_grid(y_lo: float, y_hi: float, py, left: float, right_edge: float, reference: tuple[str, float] | None) -> list[str]:
    """Six labelled y ticks with grid lines between x = left and right_edge, and the dashed reference line if any."""
    out = []
    for k in range(6):
        y = y_lo + (y_hi - y_lo) * k / 5
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{right_edge}" y2="{py(y):.1f}" stroke="#ddd"/>')
    if reference:
        out.append(f'<line x1="{left}" y1="{py(reference[1]):.1f}" x2="{right_edge}" y2="{py(reference[1]):.1f}" stroke="black" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{right_edge + 6}" y="{py(reference[1]) + 4:.1f}">{escape(reference[0])}</text>')
    return out


def _frame(width: int, height: int, margins: tuple[int, int, int, int], title: str, x_label: str, y_label: str) -> list[str]:
    """The opening of a plot: canvas, title, axes and axis labels; margins are (left, right, top, bottom)."""
    left, right, top, bottom = margins
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
            f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 {(top + height - bottom) / 2})">{escape(y_label)}</text>']


def bar_plot(categories: list[str], series: dict[str, list[float]], title: str, x_label: str, y_label: str,
             log_y: bool = False, stacked: bool = False, y_format=lambda v: f"{v:.3g}", width: int = 640, height: int = 400) -> str:
    """Bars per category: one bar per series side by side, or the series stacked into one bar (`stacked`).
    `log_y` spaces the y axis by decades (for values spanning orders of magnitude; zeros are not drawn)."""
    left, right, top, bottom = 80, 170, 36, 96
    tops = [sum(values) for values in zip(*series.values())] if stacked else [v for values in series.values() for v in values]
    if log_y:
        positive = [v for v in tops if v > 0] or [1.0]
        low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
        high += high == low
        ticks = [10.0 ** e for e in range(low, high + 1)]
        scale = lambda v: (math.log10(v) - low) / (high - low) if v > 0 else 0.0
    else:
        ticks = _round_ticks(max(tops + [0.0]))
        scale = lambda v: v / ticks[-1]
    plot_height, plot_width = height - top - bottom, width - left - right
    py = lambda v: height - bottom - scale(v) * plot_height
    out = _frame(width, height, (left, right, top, bottom), title, x_label, y_label)
    for tick in ticks:
        out.append(f'<line x1="{left}" y1="{py(tick):.1f}" x2="{width - right}" y2="{py(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{escape(y_format(tick))}</text>')
    slot = plot_width / max(len(categories), 1)
    bar = slot * 0.8 / (1 if stacked else max(len(series), 1))
    for i, category in enumerate(categories):
        x0, base = left + slot * (i + 0.1), 0.0
        for j, (label, values) in enumerate(series.items()):
            color = PALETTE[j % len(PALETTE)]
            low_value, high_value = (base, base + values[i]) if stacked else (0.0, values[i])
            x = x0 if stacked else x0 + j * bar
            if high_value > 0:
                y_top, y_bottom = py(high_value), py(low_value) if (low_value > 0 or not log_y) else height - bottom
                out.append(f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar:.1f}" height="{max(y_bottom - y_top, 0):.1f}" fill="{color}">'
                           f'<title>{escape(f"{category}, {label}: {y_format(values[i])}")}</title></rect>')
            base = high_value
        cx = left + slot * (i + 0.5)
        out.append(f'<text x="{cx:.1f}" y="{height - bottom + 14}" text-anchor="end" transform="rotate(-30 {cx:.1f} {height - bottom + 14})">{escape(category)}</text>')
    for j, label in enumerate(series):
        out.append(f'<rect x="{width - right + 8}" y="{top + 16 * j + 4}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        out.append(f'<text x="{width - right + 22}" y="{top + 16 * j + 13}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _round_ticks(highest: float) -> list[float]:
    """0 and up to about five steps of 1, 2 or 5 × 10^k that reach `highest`."""
    highest = float(f"{highest:.9g}")  # a sum of shares that rounds to 100 should give ticks up to 100
    if highest <= 0:
        return [0.0, 1.0]
    magnitude = 10.0 ** math.floor(math.log10(highest / 5))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude * 5 >= highest)
    return [step * k for k in range(math.ceil(highest / step - 1e-9) + 1)]


def scatter_plot(points: dict[str, tuple[list[float], list[float]]], title: str, x_label: str, y_label: str,
                 front: tuple[list[float], list[float]] | None = None, log_x: bool = True,
                 reference: tuple[str, float] | None = None, x_format=lambda v: f"{v:.3g}", width: int = 640,
                 height: int = 400) -> str:
    """Points per series, an optional staircase through `front` (a Pareto front, sorted by x) and an optional
    horizontal reference line (label, y). `log_x` spaces the x axis by decades; x must then be positive."""
    left, right, top, bottom = 60, 170, 36, 48
    xs = [x for pts in points.values() for x in pts[0]]
    ys = [y for pts in points.values() for y in pts[1]] + ([reference[1]] if reference else [])
    fx = (lambda x: math.log10(max(x, 1e-30))) if log_x else (lambda x: x)
    if log_x:
        x_lo, x_hi = math.floor(fx(min(xs))), math.ceil(fx(max(xs)))
        x_hi += x_hi == x_lo
        ticks = [10.0 ** e for e in range(x_lo, x_hi + 1)]
    else:
        ticks = _round_ticks(max(xs))
        x_lo, x_hi = 0.0, ticks[-1]
    y_lo, y_hi, px, py = _scales(fx, x_lo, x_hi, ys, (left, right, top, bottom), width, height)
    out = _frame(width, height, (left, right, top, bottom), title, x_label, y_label)
    for tick in ticks:
        out.append(f'<line x1="{px(tick):.1f}" y1="{top}" x2="{px(tick):.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{px(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(x_format(tick))}</text>')
    out += _y_grid(y_lo, y_hi, py, left, width - right, reference)
    if front and front[0]:
        steps = [f"{px(front[0][0]):.1f},{py(front[1][0]):.1f}"]
        for (x0, y0), (x1, y1) in zip(zip(*front), list(zip(*front))[1:]):
            steps += [f"{px(x1):.1f},{py(y0):.1f}", f"{px(x1):.1f},{py(y1):.1f}"]
        out.append(f'<polyline points="{" ".join(steps)}" fill="none" stroke="black" stroke-width="1.5"/>')
        out.append(f'<text x="{width - right + 6}" y="{top + 16}">— Pareto front</text>')
    for i, (label, (sx, sy)) in enumerate(points.items()):
        color = PALETTE[i % len(PALETTE)]
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"><title>{escape(f"{label}: {x_format(x)}, {y:.4g}")}</title></circle>'
                for x, y in zip(sx, sy)]
        out.append(f'<text x="{width - right + 6}" y="{top + 16 * (i + 2)}" fill="{color}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
