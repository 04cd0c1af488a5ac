"""Self-contained SVG line plots (no plotting dependency), for docs and reports."""

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
    y_lo, y_hi = min(ys), max(ys)
    y_pad = (y_hi - y_lo) * 0.05 or 0.01
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    px = lambda x: left + (fx(x) - x_lo) / ((x_hi - x_lo) or 1) * (width - left - right)
    py = lambda y: top + (y_hi - y) / (y_hi - y_lo) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
           f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>',
           f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 {(top + height - bottom) / 2})">{escape(y_label)}</text>']
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
    for k in range(6):
        y = y_lo + (y_hi - y_lo) * k / 5
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{width - right}" y2="{py(y):.1f}" stroke="#ddd"/>')
    if reference:
        out.append(f'<line x1="{left}" y1="{py(reference[1]):.1f}" x2="{width - right}" y2="{py(reference[1]):.1f}" stroke="black" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{width - right + 6}" y="{py(reference[1]) + 4:.1f}">{escape(reference[0])}</text>')
    for i, (label, (sx, sy)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(sx, sy))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in zip(sx, sy)]
        out.append(f'<text x="{width - right + 6}" y="{top + 16 * (i + 2)}" fill="{color}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
