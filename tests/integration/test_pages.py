"""The topology page and the diagnose report of the lab, as headless Chromium lays them out.

A script in the page (vnetdiag.testing.browser) measures every picture: no
two boxes (nodes, cluster and edge labels, axis labels) overlap, every box is
inside its picture, its container and the window (nothing is cut off), every
node's text is inside the node, and arrows point at the next hop.
"""

from __future__ import annotations

import json
import re

import pytest

from vnetdiag.testing import browser

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not browser.available(), reason="chromium is not installed (./setup.sh --test)")]


def _clean(picture: dict) -> None:
    assert not picture["overlaps"], picture["overlaps"]
    assert not picture["outside"], picture["outside"]
    assert not picture["text_overflow"], picture["text_overflow"]


def test_topology_page_draws_every_node_uncut(lab, cli, tmp_path):
    glob = f"{lab.prefix}-*"
    r = cli("topology", "--netns", glob, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    linked = {e["source"] for e in doc["edges"]} | {e["target"] for e in doc["edges"]}
    expected = {n["id"] for n in doc["nodes"]
                if n["type"] != "netns" and not (n["name"] == "lo" and n["id"] not in linked)}
    page = tmp_path / "topology.html"
    r = cli("topology", "--netns", glob, "--format", "html", "-o", str(page))
    assert r.returncode == 0, r.stderr
    for width in (1400, 1000):  # a wide window and one narrower than dot's picture
        check = browser.check(page, width_px=width)
        (picture,) = [p for p in check.pictures if p["id"] == "canvas"]
        assert set(picture["node_ids"]) == expected, (width, set(picture["node_ids"]) ^ expected)
        _clean(picture)
        assert picture["width_px"] <= width
    shot = tmp_path / "topology.png"
    browser.screenshot(page, shot, width_px=1400, height_px=900)
    assert shot.stat().st_size > 20_000


def test_diagnose_report_pictures(lab, cli, tmp_path):
    lab.add_fault("loss", "hv1:vm1-p", percent=3)
    report = tmp_path / "report.html"
    r = cli("diagnose", "--from", lab.netns("vm1"), "--to", lab.netns("vm3"), "--duration", "1.5",
            "--json", "--report", str(report))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    check = browser.check(report, width_px=1000)
    pictures = {p["id"]: p for p in check.pictures}
    # The histogram's y-axis counts at powers of ten, and latencies with their unit on x.
    ticks = pictures["histogram"]["ticks"]
    counts = [t["text"] for t in ticks if t["axis"] == "ytick"]
    assert counts[:3] == ["1", "10", "100"], counts
    assert all(re.fullmatch(r"[0-9.]+ (us|ms|s)", t["text"]) for t in ticks if t["axis"] == "xtick"), ticks
    for p in check.pictures:
        _clean(p)
    # One path picture per direction: every hop drawn, an arrow from each hop to the next, pointing at it.
    paths = [p for p in check.pictures if any(n.startswith("hop-") for n in p["node_ids"])]
    for direction, p in zip(("forward", "reverse"), paths):
        hops = [h for h in doc["path"] if h["direction"] == direction]
        assert len([n for n in p["node_ids"] if n.startswith("hop-")]) == len(hops)
        steps = [a for a in p["arrows"] if "step" in (a["cls"] or "")]
        assert [a["edge"] for a in steps] == [f"hop-{direction}-{i}->hop-{direction}-{i + 1}"
                                              for i in range(len(hops) - 1)]
        assert {a["arrowhead"] for a in steps} == {"head"}
    assert len(paths) == 2
    # Counters: only the path's namespaces in the table; any others collapsed below it.
    html = report.read_text()
    section = html[html.index('<section id="counters">'):]
    main = section.split("<details", 1)[0]
    on_path = {h["netns"] for h in doc["path"]}
    shown = set(re.findall(r"<tr><td>([^<]*)</td>", main))
    assert shown and shown <= on_path, shown - on_path
    assert check.other_counters_open in (None, False)
    shot = tmp_path / "report.png"
    browser.screenshot(report, shot, width_px=1000)
    assert shot.stat().st_size > 20_000
