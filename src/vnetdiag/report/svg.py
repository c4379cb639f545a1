"""Small inline-SVG charts for self-contained HTML reports (no scripts, no network)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from vnetdiag.report.units import edge_us


def _count(n: int) -> str:
    return f"{n:,}"


_NOTHING = '<p class="sub">no transaction completed: nothing to plot</p>'


class _LogAxes:
    """Log-x (latency) and log-y (count) axes shared by the histogram charts:
    latency with its unit at each power of ten, counts from 0.5 (so a bin of
    one transaction still shows) to the next power of ten."""

    pad_l, pad_r, pad_b, pad_t = 70, 12, 44, 12

    def __init__(self, bins: Sequence[tuple[float, float, int]], *, width: int, height: int,
                 marks: Sequence[tuple[float, str]]) -> None:
        self.width, self.height = width, height
        self.lo = math.log10(min(b[0] for b in bins) or 1)
        self.hi = math.log10(max(max(b[1] for b in bins), *(m[0] * 1.2 for m in marks)) if marks else
                             max(b[1] for b in bins))
        self.span = max(self.hi - self.lo, 1e-9)
        self.y_lo, self.y_hi = math.log10(0.5), max(1, math.ceil(math.log10(max(b[2] for b in bins)) + 0.05))
        self.base = height - self.pad_b

    def x(self, us: float) -> float:
        return self.pad_l + (math.log10(max(us, 1e-3)) - self.lo) / self.span * (self.width - self.pad_l - self.pad_r)

    def y(self, count: float) -> float:
        return self.pad_t + (1 - (math.log10(count) - self.y_lo) / (self.y_hi - self.y_lo)) * (self.base - self.pad_t)

    def open(self, kind: str, label: str) -> str:
        """The <svg> tag of a chart of class ``chart histogram`` plus ``kind``."""
        return (f'<svg class="chart histogram{kind}" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{label}">')

    def grid(self) -> list[str]:
        x, y, pad_l, pad_t, base, width = self.x, self.y, self.pad_l, self.pad_t, self.base, self.width
        out = []
        for decade in range(0, self.y_hi + 1):
            n = 10 ** decade
            out.append(f'<line class="grid" x1="{pad_l}" x2="{width - self.pad_r}" y1="{y(n):.1f}" y2="{y(n):.1f}"/>'
                       f'<text class="ytick" x="{pad_l - 6}" y="{y(n) + 4:.1f}" text-anchor="end">{_count(n)}</text>')
        for decade in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            us = 10 ** decade
            if pad_l - 1 <= x(us) <= width - self.pad_r + 1:
                out.append(f'<line class="grid" x1="{x(us):.1f}" x2="{x(us):.1f}" y1="{pad_t}" y2="{base}"/>'
                           f'<text class="xtick" x="{x(us):.1f}" y="{base + 15}" text-anchor="middle">{edge_us(us)}</text>')
        return out

    def marks(self, marks: Sequence[tuple[float, str]]) -> list[str]:
        x, out = self.x, []
        for us, label in marks:
            # Near the right edge the label goes left of its line, where it stays on the chart.
            right = x(us) > self.pad_l + 0.7 * (self.width - self.pad_l - self.pad_r)
            out.append(f'<line class="mark" x1="{x(us):.1f}" x2="{x(us):.1f}" y1="{self.pad_t}" y2="{self.base}"/>'
                       f'<text class="mark" x="{x(us) + (-3 if right else 3):.1f}" y="{self.pad_t + 12}" '
                       f'text-anchor="{"end" if right else "start"}">{escape(label)}</text>')
        return out

    def frame(self) -> str:
        pad_l, pad_t, base, width, height = self.pad_l, self.pad_t, self.base, self.width, self.height
        return (f'<line class="axis" x1="{pad_l}" x2="{pad_l}" y1="{pad_t}" y2="{base}"/>'
                f'<line class="axis" x1="{pad_l}" x2="{width - self.pad_r}" y1="{base}" y2="{base}"/>'
                f'<text class="axis-title" x="{(pad_l + width - self.pad_r) / 2:.0f}" y="{height - 6}" '
                f'text-anchor="middle">latency of a transaction (log scale; us, ms, s)</text>'
                f'<text class="axis-title" x="14" y="{(pad_t + base) / 2:.0f}" '
                f'transform="rotate(-90 14 {(pad_t + base) / 2:.0f})" text-anchor="middle">'
                f'transactions per bin (count, log scale)</text></svg>')


def log_histogram(bins: Sequence[tuple[float, float, int]], *, width: int = 720, height: int = 260,
                  marks: Sequence[tuple[float, str]] = ()) -> str:
    """Bars of (low_us, high_us, count) on a log-x, log-y chart, like seed 001's figure,
    with both axes labelled: latency with its unit, counts at each power of ten.
    ``marks`` are vertical lines (latency_us, label), e.g. the minimum RTO."""
    bins = [b for b in bins if b[2] > 0]
    if not bins:
        return _NOTHING
    ax = _LogAxes(bins, width=width, height=height, marks=marks)
    x, y, base = ax.x, ax.y, ax.base
    out = [ax.open("", "latency histogram"), *ax.grid()]
    for b_lo, b_hi, n in bins:
        x0, x1 = x(b_lo), max(x(b_hi) - 1, x(b_lo) + 1)
        out.append(f'<rect class="bar" x="{x0:.1f}" y="{y(n):.1f}" width="{x1 - x0:.1f}" '
                   f'height="{base - y(n):.1f}"><title>{edge_us(b_lo)}–{edge_us(b_hi)}: {_count(n)} '
                   f'transactions</title></rect>')
    out += ax.marks(marks)
    out.append(ax.frame())
    return "".join(out)


def overlaid_histograms(series: Sequence[tuple[str, Sequence[tuple[float, float, int]]]], *, width: int = 720,
                        height: int = 300, marks: Sequence[tuple[float, str]] = ()) -> str:
    """Several histograms (label, bins of (low_us, high_us, count)) on the same
    axes as ``log_histogram``: each an outlined step of its own colour class
    (``s0``..``s3``), lightly filled, so where one path's tail stands out the
    others' shapes still show; a legend names them."""
    drawn = [(label, [b for b in bins if b[2] > 0]) for label, bins in series]
    every = [b for _label, bins in drawn for b in bins]
    if not every:
        return _NOTHING
    ax = _LogAxes(every, width=width, height=height, marks=marks)
    x, y, base = ax.x, ax.y, ax.base
    out = [ax.open(" overlay", "latency histograms overlaid"), *ax.grid()]
    for i, (label, bins) in enumerate(drawn):
        if not bins:
            continue
        points = [f"{x(bins[0][0]):.1f},{base}"]
        for b_lo, b_hi, n in bins:
            if abs(float(points[-1].split(",")[0]) - x(b_lo)) > 0.05:  # a gap of empty bins: back to the axis
                points += [f"{points[-1].split(',')[0]},{base}", f"{x(b_lo):.1f},{base}"]
            points += [f"{x(b_lo):.1f},{y(n):.1f}", f"{x(b_hi):.1f},{y(n):.1f}"]
        points.append(f"{x(bins[-1][1]):.1f},{base}")
        total = sum(b[2] for b in bins)
        out.append(f'<polygon class="series s{i % 4} f{i % 4}" points="{" ".join(points)}">'
                   f'<title>{escape(label)}: {_count(total)} transactions</title></polygon>')
        out.append(f'<text class="legend s{i % 4}" x="{width - ax.pad_r - 4}" y="{ax.pad_t + 14 + 15 * i}" '
                   f'text-anchor="end">━ {escape(label)}</text>')
    out += ax.marks(marks)
    out.append(ax.frame())
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
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"  # the ends stay inside the chart
        out.append(f'<text x="{xt:.0f}" y="{height - 6}" text-anchor="{anchor}">{t:.1f} s</text>')
    out.append("</svg>")
    return "".join(out)
