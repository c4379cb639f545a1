"""compare's statistics on a recorded real run (tests/golden/compare/record.py):
veth vm1 -> vm3, its clean twin, and the macvtap guest with 5 % loss injected
at hv1:mvl0-p. The paired round bootstrap calls the lossy path worse and the
twin not; identical paths differ by exactly nothing; a constant shift is found
within the bin width; too few rounds give no interval."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden" / "compare"))

from recording import load  # noqa: E402

from vnetdiag.analyze.difference import PathRounds, differences  # noqa: E402
from vnetdiag.compare import assemble, document, parse_path, shared_edges_us  # noqa: E402
from vnetdiag.errors import UsageError  # noqa: E402
from vnetdiag.model.compare import SCHEMA, PathSpec  # noqa: E402
from vnetdiag.probe.compare import _latencies, balanced_rounds, order_of  # noqa: E402


@pytest.fixture(scope="module")
def recorded():
    return load("lab_loss")


def _assemble(rec, slices=None, paths=None, where=None, **kw):
    s = rec["settings"]
    return assemble(paths or rec["paths"], where or rec["where"], rec["slices"] if slices is None else slices,
                    rounds_asked=s["rounds"], slice_s=s["slice_s"], warmup_s=s["warmup_s"], pattern=s["pattern"],
                    streams=s["streams"], builds=rec["builds"] if paths is None else (), **kw)


def _diff(result, path, metric):
    return next(d for d in result.differences if d.path == path and d.metric == metric)


def test_the_lossy_path_is_worse_and_the_clean_twin_is_not(recorded):
    r = _assemble(recorded)
    assert [f.label for f in r.paths] == ["veth", "twin", "macvtap-loss"]
    assert r.rounds == 6 and r.inference.rounds == 6
    lossy = {m: _diff(r, "macvtap-loss", m) for m in ("loss_rate", "p99_us", "rate_per_s")}
    assert lossy["loss_rate"].significant and lossy["loss_rate"].low > 0
    assert lossy["p99_us"].significant and lossy["p99_us"].low > 100_000  # RTO tails: 200 ms
    assert lossy["rate_per_s"].significant and lossy["rate_per_s"].high < 0
    assert r.paths[2].tails.get("min-rto", 0) > 0
    for metric in ("p50_us", "p99_us", "p999_us", "loss_rate", "rate_per_s"):
        twin = _diff(r, "twin", metric)
        assert not twin.significant, twin
        assert twin.low <= twin.estimate <= twin.high or metric == "p999_us", twin


def test_a_path_against_itself_differs_by_exactly_nothing(recorded):
    veth = [s for s in recorded["slices"] if s.path == 0]
    same = veth + [dataclasses.replace(s, path=1) for s in veth]
    r = _assemble(recorded, slices=same, paths=recorded["paths"][:2], where=recorded["where"][:2])
    for d in r.differences:
        assert (d.estimate, d.low, d.high, d.significant) == (0.0, 0.0, 0.0, False), d


def test_a_constant_shift_is_found_within_the_bin_width(recorded):
    veth = [s for s in recorded["slices"] if s.path == 0]
    rounds = [PathRounds(label=label, latency_us=[s.latency_us + shift for s in veth], lost=[0] * len(veth),
                         trials=[s.trials for s in veth], transactions=[s.transactions for s in veth],
                         duration_s=[s.duration_s for s in veth]) for label, shift in (("a", 0.0), ("b", 100.0))]
    estimates = [{"p50_us": float(np.median(np.concatenate(p.latency_us))), "p99_us": 0.0, "p999_us": 0.0,
                  "loss_rate": 0.0, "rate_per_s": 0.0} for p in rounds]
    diffs, inference = differences(rounds, estimates, resamples=500)
    p50 = next(d for d in diffs if d.metric == "p50_us")
    assert p50.significant
    # Paired draws: the same rounds for both, so only the bins' width (0.5 %) blurs the shift.
    assert 100 * (1 - 2 * (inference.bin_ratio - 1)) - 1 <= p50.low <= p50.high <= 100 + 2 * 130 * (inference.bin_ratio - 1) + 1


def test_intervals_are_reproducible_and_need_three_rounds(recorded):
    a, b = _assemble(recorded), _assemble(recorded)
    assert a.differences == b.differences
    other = _assemble(recorded, seed=1)
    assert other.differences != a.differences  # the seed is what fixes them
    two = [s for s in recorded["slices"] if s.round < 2]
    r = _assemble(recorded, slices=two)
    assert r.rounds == 2 and all(d.low is None and not d.significant for d in r.differences)
    assert any("too few" in n for n in r.notes)


def test_document_and_page_from_the_recording(recorded):
    from vnetdiag.cli.output import to_json
    from vnetdiag.report.compare_html import html

    r = _assemble(recorded)
    doc = document(r)
    assert doc["schema"] == SCHEMA == "vnetdiag.compare/1"
    assert doc["baseline"] == "veth" and len(doc["slices"]) == 18
    assert {p["label"]: p["build"]["kinds"][:2] for p in doc["paths"]}["macvtap-loss"] == ["tun", "macvtap"]
    to_json(doc)  # plain JSON types only
    page = _Svgs()
    page.feed(html(r))
    assert page.classes.count("chart histogram overlay") == 1
    assert page.classes.count("chart histogram") == 3  # one per path beside the overlay
    assert page.polygons == 3


class _Svgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.polygons = 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.classes.append(dict(attrs).get("class", ""))
        if tag == "polygon":
            self.polygons += 1


def test_terminal_view_keeps_the_labels(recorded):
    from io import StringIO

    from rich.console import Console

    from vnetdiag.report.compare_text import render

    buf = StringIO()
    render(_assemble(recorded), Console(file=buf, width=80, highlight=False, emoji=False))
    text = buf.getvalue()
    for word in ("veth", "twin", "macvtap-loss", "min-rto", "mvtap0", "differs"):
        assert word in text, word


@pytest.mark.parametrize("text, expected", [
    ("veth=vm1->vm3", PathSpec(label="veth", source="vm1", target="vm3")),
    ("sriov = pid:4242:10.0.0.1 -> host:10.0.0.9", PathSpec(label="sriov", source="pid:4242:10.0.0.1",
                                                              target="host:10.0.0.9")),
    ("vm2→vm3", PathSpec(label="vm2->vm3", source="vm2", target="vm3")),
    ("v6=a:fd00::1->b:fd00::2", PathSpec(label="v6", source="a:fd00::1", target="b:fd00::2")),
    ("/proc/1/ns/net->netns:4026532317", PathSpec(label="/proc/1/ns/net->netns:4026532317",
                                                  source="/proc/1/ns/net", target="netns:4026532317")),
])
def test_path_grammar(text, expected):
    assert parse_path(text) == expected


@pytest.mark.parametrize("text", ["vm1", "x=vm1->", "a->b->c", "bad label=vm1->vm3", "=vm1->vm3"])
def test_path_grammar_errors(text):
    with pytest.raises(UsageError):
        parse_path(text)


@pytest.mark.parametrize("paths", [2, 3, 4, 5])
def test_round_orders_balance_places_and_predecessors(paths):
    rows = [order_of(r, paths) for r in range(balanced_rounds(1, paths))]
    assert len(rows) == (paths if paths % 2 == 0 else 2 * paths)
    for k in range(paths):  # every path in every place equally often
        assert sorted(row[k] for row in rows) == sorted(list(range(paths)) * (len(rows) // paths))
    follows = Counter((a, b) for row in rows for a, b in zip(row, row[1:]))
    assert len(follows) == paths * (paths - 1) and len(set(follows.values())) == 1  # and after every other
    assert balanced_rounds(10, 3) == 12 and balanced_rounds(4, 2) == 4


def test_raw_log_and_shared_edges():
    lat = _latencies("stream,completed_s,latency_us\n0,0.000812,52.113\n1,0.001020,208101.500\n")
    assert lat.tolist() == [52.113, 208101.5]
    assert len(_latencies("stream,completed_s,latency_us\n")) == 0
    edges = shared_edges_us([lat, np.array([9.5])])
    assert edges[0] <= 9.5 and edges[-1] >= 208101.5
    assert np.allclose(np.diff(np.log10(edges)), 0.1)
