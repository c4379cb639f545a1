"""The diagnose report's pictures and counters from a recorded lab bundle (no root, no browser).

The layout itself is measured in Chromium by tests/integration/test_pages.py;
here: what the report is made of (DOT, axis labels, which counters go where).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vnetdiag.collect import bundlefile
from vnetdiag.diagnose import diagnosis_of
from vnetdiag.report import diagnosis as report
from vnetdiag.report import svg
from vnetdiag.system import graphviz
from vnetdiag.topology.drawing import path_dot

BUNDLES = Path(__file__).resolve().parents[1] / "golden" / "bundles" / "lab"


@pytest.fixture(scope="module")
def run():
    # Loss on the underlay, recorded on a busy host: other namespaces' counters moved too.
    return diagnosis_of(bundlefile.read(BUNDLES / "loss-fabric-hv2p-ebpf.json.gz"))


def test_path_dot_chains_the_hops_with_arrows_in_order(run):
    for direction in ("forward", "reverse"):
        hops = [h for h in run.diagnosis.path if h.direction == direction]
        dot = path_dot(hops, culprits={(hops[1].netns_inode, hops[1].device)})
        steps = re.findall(r'"(hop-\w+-\d+)" -> "(hop-\w+-\d+)" \[color', dot)
        assert steps == [(f"hop-{direction}-{i}", f"hop-{direction}-{i + 1}") for i in range(len(hops) - 1)]
        assert "dir=none" not in dot  # arrowheads: the probe's direction
        assert dot.count('class="hop culprit"') == sum(1 for h in hops if (h.netns_inode, h.device)
                                                       == (hops[1].netns_inode, hops[1].device))
        # One box per namespace, in the order the packets enter them.
        titles = re.findall(r'"ns-\w+-\d+" \[id=[^\]]*label=<<B>([^<]*)</B>>', dot)
        assert titles == list(dict.fromkeys(h.netns for h in hops))


def test_counters_on_the_path_apart_from_the_others(run):
    on_path, elsewhere = report.split_by_path(report.moved_counters(run), run.diagnosis.path)
    inodes = {h.netns_inode for h in run.diagnosis.path}
    assert on_path and all(r[0] in inodes for r in on_path)
    assert all(r[0] not in inodes for r in elsewhere)
    assert report.split_by_path(on_path + elsewhere, ())[0] == on_path + elsewhere  # no path: all shown


@pytest.mark.skipif(not graphviz.available(), reason="Graphviz (dot) is not installed")
def test_report_html_has_the_sections_and_inline_svg(run):
    html = report.html(run)
    section = html[html.index('<section id="counters">'):]
    assert "<details" in section and "http://" not in html and "https://" not in html
    pictures = re.findall(r'<div class="path-picture" data-direction="(\w+)"><svg width="100%"', html)
    assert pictures == ["forward", "reverse"]


def test_histogram_labels_counts_and_units():
    chart = svg.log_histogram([(20, 50, 1), (50, 100, 30), (200_000, 500_000, 1234)],
                              marks=[(200_000, "min RTO 200 ms")])
    counts = re.findall(r'<text class="ytick"[^>]*>([^<]*)</text>', chart)
    assert counts == ["1", "10", "100", "1,000", "10,000"]
    latencies = re.findall(r'<text class="xtick"[^>]*>([^<]*)</text>', chart)
    assert latencies and all(re.fullmatch(r"[0-9.]+ (us|ms|s)", t) for t in latencies)
    assert "transactions per bin (count, log scale)" in chart and "latency of a transaction" in chart
    assert 'text-anchor="end">min RTO 200 ms' in chart  # near the right edge: left of its line
    assert svg.log_histogram([]).startswith("<p")
