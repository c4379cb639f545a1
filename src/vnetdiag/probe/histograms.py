"""HDR histograms of latencies in nanoseconds: recording in bulk, merging,
summarising, log-scale bins for the terminal, and the interval log.

Percentiles of a merged total always come from merging histograms
(``HdrHistogram.add``), never from averaging per-stream percentiles.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TextIO

import numpy as np
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from vnetdiag.model.probe import HistogramBin, LatencyStats, Percentile

HIGHEST_NS = 3600 * 10**9
SIGNIFICANT_DIGITS = 3
_SUB_BUCKET_BITS = 11  # 2048 sub-buckets give 3 significant digits
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_NS, SIGNIFICANT_DIGITS)


def bucket_floor(values_ns: np.ndarray) -> np.ndarray:
    """Each value rounded down to the lowest value HDR treats as equivalent, so a
    batch can be recorded as (value, count) pairs without changing any count."""
    v = np.clip(np.asarray(values_ns, dtype=np.int64), 1, HIGHEST_NS)
    bits = np.frexp(v.astype(np.float64))[1]  # bit length, exact below 2**53
    shift = np.maximum(bits - _SUB_BUCKET_BITS, 0)
    return (v >> shift) << shift


def record_many(hist: HdrHistogram, values_ns: Iterable[int] | np.ndarray) -> None:
    """Record a batch of latencies (ns) in one histogram, in C-speed groups."""
    arr = np.asarray(values_ns if isinstance(values_ns, np.ndarray) else np.fromiter(values_ns, np.int64))
    if arr.size == 0:
        return
    values, counts = np.unique(bucket_floor(arr), return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist()):
        hist.record_value(v, c)


def merged(hists: Iterable[HdrHistogram]) -> HdrHistogram:
    total = new_histogram()
    for h in hists:
        if h.get_total_count():
            total.add(h)
    return total


def _us(ns: float) -> float:
    return ns / 1000.0


def summarize(hist: HdrHistogram) -> LatencyStats:
    """Percentiles p50..p99.99 and max, each with the number of samples at or above it."""
    total = hist.get_total_count()
    if total == 0:
        return LatencyStats(count=0, min_us=0.0, mean_us=0.0, max_us=0.0,
                            percentiles=tuple(Percentile(name=n, quantile=round(q / 100, 6), latency_us=0.0,
                                                         samples_beyond=0) for n, q in PERCENTILES)
                            + (Percentile(name="max", quantile=1.0, latency_us=0.0, samples_beyond=0),))
    values = [hist.get_value_at_percentile(q) for _, q in PERCENTILES]
    max_ns = hist.get_max_value()
    beyond = _samples_at_or_above(hist, values + [max_ns])
    pcts = tuple(Percentile(name=n, quantile=round(q / 100, 6), latency_us=_us(v), samples_beyond=b)
                 for (n, q), v, b in zip(PERCENTILES, values, beyond))
    pcts += (Percentile(name="max", quantile=1.0, latency_us=_us(max_ns), samples_beyond=beyond[-1]),)
    return LatencyStats(count=total, min_us=_us(hist.get_min_value()), mean_us=_us(hist.get_mean_value()),
                        max_us=_us(max_ns), percentiles=pcts)


def _samples_at_or_above(hist: HdrHistogram, thresholds: list[int]) -> list[int]:
    total = hist.get_total_count()
    below = [0] * len(thresholds)
    for item in hist.get_recorded_iterator():
        value = hist.get_lowest_equivalent_value(item.value_iterated_to)
        for i, t in enumerate(thresholds):
            if value < hist.get_lowest_equivalent_value(t):
                below[i] += item.count_at_value_iterated_to
    return [total - b for b in below]


def log_bins(hist: HdrHistogram, per_decade: int = 3) -> tuple[HistogramBin, ...]:
    """Counts in log-spaced bins (1-2-5 steps by default) from the smallest to the
    largest recorded latency: the x axis of seed 001's figure."""
    if hist.get_total_count() == 0:
        return ()
    steps = {3: (1, 2, 5), 1: (1,)}.get(per_decade, (1, 2, 5))
    lo_ns, hi_ns = hist.get_min_value(), hist.get_max_value()
    decade = 10 ** int(np.floor(np.log10(max(lo_ns, 1))))
    edges: list[int] = []
    while not edges or edges[-1] <= hi_ns:
        edges.extend(s * decade for s in steps)
        decade *= 10
    while len(edges) > 2 and edges[1] <= lo_ns:  # the first bin holds the minimum
        edges.pop(0)
    while len(edges) > 2 and edges[-2] > hi_ns:  # and the last one the maximum
        edges.pop()
    counts = [0] * (len(edges) - 1)
    for item in hist.get_recorded_iterator():
        v = hist.get_lowest_equivalent_value(item.value_iterated_to)
        i = int(np.searchsorted(edges, v, side="right")) - 1
        counts[min(max(i, 0), len(counts) - 1)] += item.count_at_value_iterated_to
    return tuple(HistogramBin(low_us=_us(edges[i]), high_us=_us(edges[i + 1]), count=c)
                 for i, c in enumerate(counts))


class IntervalLog:
    """Writes the HdrHistogram interval-log format (version 1.2): one line per
    interval with start, length, max (ms) and the compressed histogram (ns)."""

    def __init__(self, stream: TextIO, *, start_epoch_s: float | None = None, comment: str = "") -> None:
        self._stream = stream
        self._writer = HistogramLogWriter(stream)
        self.start_epoch_s = time.time() if start_epoch_s is None else start_epoch_s
        if comment:
            self._writer.output_comment(comment)
        self._writer.output_log_format_version()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.start_epoch_s))
        stream.write(f"#[StartTime: {self.start_epoch_s:.3f} (seconds since epoch), {stamp}]\n")
        self._writer.output_legend()

    def write(self, hist: HdrHistogram, start_s: float, end_s: float, *, max_ns: int | None = None) -> None:
        """One interval, times relative to the start (seconds).

        ``max_ns``: the interval's exact largest latency. The line is written
        here rather than by hdrh, whose writer reports the histogram's max
        (the top of its bucket, up to 0.1 % high) floored to whole milliseconds
        (a 200.9 ms tail became 200.000)."""
        if end_s <= start_s:
            return
        top_ns = max_ns if max_ns is not None else (hist.get_max_value() if hist.get_total_count() else 0)
        payload = hist.encode().decode("ascii")
        self._stream.write(f"{start_s:f},{end_s - start_s:f},{top_ns / 1e6:f},{payload}\n")
        self._stream.flush()
