"""The compare page: one self-contained HTML file (inline SVG, no scripts) with
the paths side by side, the differences and their intervals, the histograms
overlaid on shared bins, and how each path is built."""

from __future__ import annotations

import time
from importlib import resources

from vnetdiag import __version__
from vnetdiag.model.compare import CompareResult, Difference
from vnetdiag.report import svg
from vnetdiag.report.compare_text import METRIC_NAMES, interval_text, loss_text, value_text, worse
from vnetdiag.report.summary import counted
from vnetdiag.report.units import fmt_us

LOSS_MEANING = ("udp-rr: requests never answered; TCP: transactions slowed by a retransmission timer "
                "(min-rto and its doublings, SYN retransmits), as a share of transactions")


def _verdict(d: Difference) -> str:
    return ("worse" if worse(d) else "better") if d.significant else ""


def _numbered(hops):
    """(number within its direction, hop): each way counts from 1."""
    seen: dict[str, int] = {}
    for h in hops:
        seen[h.direction] = seen.get(h.direction, 0) + 1
        yield seen[h.direction], h


def html(result: CompareResult) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(resources.files("vnetdiag.report").joinpath("templates/compare.html.j2").read_text())
    series = [(f.label, [(b.low_us, b.high_us, b.count) for b in f.histogram]) for f in result.paths]
    return template.render(
        r=result, labels=[f.label for f in result.paths], version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), us=fmt_us, loss=loss_text,
        tails=lambda f: counted(f.tails, count_first=True) if f.tails else "none",
        value=lambda m, v: value_text(m, v, signed=True), interval=interval_text, verdict=_verdict,
        metric_names=METRIC_NAMES, numbered=_numbered, loss_meaning=LOSS_MEANING,
        overlay=svg.overlaid_histograms(series),
        singles=[(label, svg.log_histogram(bins, width=520, height=260)) for label, bins in series])
