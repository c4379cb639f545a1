"""Small inline-SVG charts for self-contained HTML reports (no scripts, no network)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from vnetdiag.report.units import edge_us


def log_histogram(bins: Sequence[tuple[float, float, int]], *, width: int = 720, height: int = 240,
                  marks: Sequence[tuple[float, str]] = ()) -> str:
    """Bars of (low_us, high_us, count) on a log-x, log-y chart, like seed 001's figure.
    ``marks`` are vertical lines (latency_us, label), e.g. the minimum RTO."""
    bins = [b for b in bins if b[2] > 0]
    if not bins:
        return '<svg width="10" height="10"></svg>'
    pad_l, pad_b, pad_t = 50, 36, 10
    lo = math.log10(min(b[0] for b in bins) or 1)
    hi = math.log10(max(max(b[1] for b in bins), *(m[0] * 1.2 for m in marks)) if marks else max(b[1] for b in bins))
    top = math.log10(max(b[2] for b in bins)) + 0.2
    span = max(hi - lo, 1e-9)

    def x(us: float) -> float:
        return pad_l + (math.log10(max(us, 1e-3)) - lo) / span * (width - pad_l - 10)

    def y(count: float) -> float:
        return pad_t + (1 - math.log10(count + 1) / (top + 0.001)) * (height - pad_t - pad_b)

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for b_lo, b_hi, n in bins:
        x0, x1 = x(b_lo), max(x(b_hi) - 1, x(b_lo) + 1)
        out.append(f'<rect class="bar" x="{x0:.1f}" y="{y(n):.1f}" width="{x1 - x0:.1f}" '
                   f'height="{height - pad_b - y(n):.1f}"><title>{edge_us(b_lo)}–{edge_us(b_hi)}: {n}</title></rect>')
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        us = 10 ** decade
        if x(us) >= pad_l - 1:
            out.append(f'<line class="grid" x1="{x(us):.1f}" x2="{x(us):.1f}" y1="{pad_t}" y2="{height - pad_b}"/>'
                       f'<text x="{x(us):.1f}" y="{height - pad_b + 14}" text-anchor="middle">{edge_us(us)}</text>')
    for us, label in marks:
        out.append(f'<line class="mark" x1="{x(us):.1f}" x2="{x(us):.1f}" y1="{pad_t}" y2="{height - pad_b}"/>'
                   f'<text class="mark" x="{x(us) + 3:.1f}" y="{pad_t + 12}">{escape(label)}</text>')
    out.append(f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle">latency (log scale)</text>'
               f'<text x="12" y="{height / 2:.0f}" transform="rotate(-90 12 {height / 2:.0f})" '
               f'text-anchor="middle">transactions (log)</text></svg>')
    return "".join(out)


def timeline(series: Sequence[tuple[str, Sequence[float]]], *, duration_s: float, width: int = 720,
             row_h: int = 26) -> str:
    """One row of ticks per series (label, event times in seconds): tails against drops."""
    pad_l = 190
    height = row_h * len(series) + 30
    dur = max(duration_s, 1e-6)
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, times) in enumerate(series):
        y0 = 8 + i * row_h
        out.append(f'<text x="{pad_l - 8}" y="{y0 + row_h / 2 + 4:.0f}" text-anchor="end">{escape(label)} '
                   f'({len(times)})</text><line class="grid" x1="{pad_l}" x2="{width - 10}" '
                   f'y1="{y0 + row_h / 2}" y2="{y0 + row_h / 2}"/>')
        for t in times:
            xt = pad_l + min(max(t / dur, 0), 1) * (width - pad_l - 10)
            out.append(f'<line class="tick s{i % 4}" x1="{xt:.1f}" x2="{xt:.1f}" y1="{y0 + 4}" y2="{y0 + row_h - 4}"/>')
    for k in range(6):
        t = dur * k / 5
        xt = pad_l + k / 5 * (width - pad_l - 10)
        out.append(f'<text x="{xt:.0f}" y="{height - 6}" text-anchor="middle">{t:.1f} s</text>')
    out.append("</svg>")
    return "".join(out)


def path_chain(hops: Sequence[tuple[str, str, bool]], *, width: int = 720) -> str:
    """Boxes for (netns, device, is_culprit) in order, left to right, wrapping."""
    if not hops:
        return "<p>path not resolved</p>"
    box_w, box_h, gap = 132, 44, 22
    per_row = max(1, (width + gap) // (box_w + gap))
    rows = math.ceil(len(hops) / per_row)
    height = rows * (box_h + 26) + 10
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (netns, device, culprit) in enumerate(hops):
        r, c = divmod(i, per_row)
        x0, y0 = c * (box_w + gap) + 2, r * (box_h + 26) + 6
        cls = "hop culprit" if culprit else "hop"
        out.append(f'<g class="{cls}" data-device="{escape(device)}"><rect x="{x0}" y="{y0}" width="{box_w}" '
                   f'height="{box_h}" rx="6"/><text x="{x0 + box_w / 2}" y="{y0 + 18}" text-anchor="middle">'
                   f'{escape(device)}</text><text class="ns" x="{x0 + box_w / 2}" y="{y0 + 34}" '
                   f'text-anchor="middle">{escape(netns)}</text></g>')
        if c < per_row - 1 and i < len(hops) - 1:
            out.append(f'<line class="edge" x1="{x0 + box_w}" x2="{x0 + box_w + gap}" y1="{y0 + box_h / 2}" '
                       f'y2="{y0 + box_h / 2}"/>')
    out.append("</svg>")
    return "".join(out)

