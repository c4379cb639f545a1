"""vnetdiag compare on the lab: veth vm1 -> vm3, its clean twin, and the
macvtap guest vm2 -> vm3 with loss injected at hv1:mvl0-p (the bridge port of
the macvtap's lower device, crossed by that path only). The lossy path is the
one reported worse, with intervals that exclude zero; the twin is not (the
round orders are balanced, so it does not pay for following the lossy path); the
document says how each path is built; the page has the histograms."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from vnetdiag.probe.compare import order_of

pytestmark = pytest.mark.root


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[str] = []
        self.rows: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append(a.get("class", ""))
        if tag == "tr" and a.get("class") == "difference":
            self.rows.append(a)


def test_compare_reports_the_lossy_path_worse_and_not_its_clean_twin(lab, tmp_path):
    lab.add_fault("loss", at="hv1:mvl0-p", percent=5)
    page = tmp_path / "compare.html"
    # One path by namespace names (with an address), the others by lab node.
    veth = f"veth={lab.netns('vm1')}->{lab.netns('vm3')}:{lab.ip('vm3')}"
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "compare", "--json", "--path", veth,
                        "--path", "twin=vm1->vm3", "--path", "macvtap=vm2->vm3", "--duration", "0.9",
                        "--slice", "0.15", "--streams", "2", "--html", str(page)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "compare: round 6/6" in r.stderr and "compare: wrote" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "vnetdiag.compare/1" and doc["baseline"] == "veth" and doc["rounds"] == 6
    paths = {p["label"]: p for p in doc["paths"]}
    assert list(paths) == ["veth", "twin", "macvtap"]
    assert paths["macvtap"]["lost"] > 0 and paths["macvtap"]["tails"].get("min-rto", 0) > 0
    assert paths["veth"]["lost"] == 0 or paths["veth"]["loss_rate"] < 0.001
    # Slices interleaved: every round has each path once, in the balanced order.
    labels = ["veth", "twin", "macvtap"]
    for k in range(doc["rounds"]):
        rnd = sorted((s for s in doc["slices"] if s["round"] == k), key=lambda s: s["position"])
        assert [s["path"] for s in rnd] == [labels[i] for i in order_of(k, 3)]
        assert all(a["started_s"] < b["started_s"] for a, b in zip(rnd, rnd[1:]))
    diff = {(d["path"], d["metric"]): d for d in doc["differences"]}
    worse_loss = {p for (p, m), d in diff.items() if m == "loss_rate" and d["significant"] and d["low"] > 0}
    assert worse_loss == {"macvtap"}
    assert diff[("macvtap", "p99_us")]["significant"] and diff[("macvtap", "p99_us")]["low"] > 100_000
    assert diff[("twin", "p99_us")]["estimate"] < 10_000  # no RTO tail on the twin
    assert doc["inference"]["method"].startswith("paired bootstrap over rounds")
    # How each path is built: the macvtap guest's tap and macvtap, the veth guest's veth; both cross the overlay.
    kinds = {label: p["build"]["kinds"] for label, p in paths.items()}
    assert kinds["macvtap"][:2] == ["tun", "macvtap"] and kinds["veth"][0] == "veth"
    assert all("vxlan" in k and "bridge" in k for k in kinds.values())
    hops = {(h["netns"], h["device"]): h for h in paths["macvtap"]["build"]["hops"] if h["direction"] == "forward"}
    mv = hops[(lab.netns("hv1"), "mvtap0")]
    assert mv["driver"] == "macvlan" and mv["details"] == "mode bridge" and mv["queues"] == "1/1"
    assert (lab.netns("hv1"), "mvl0-p") in hops
    assert paths["veth"]["build"]["complete"] and paths["macvtap"]["build"]["complete"]
    # The page: the overlay and one histogram per path, the differences as rows.
    html = _Page()
    html.feed(page.read_text())
    assert html.svgs.count("chart histogram overlay") == 1 and html.svgs.count("chart histogram") == 3
    assert {(row["data-path"], row["data-metric"]) for row in html.rows if row["data-significant"] == "yes"} >= {
        ("macvtap", "loss_rate"), ("macvtap", "p99_us")}


def test_compare_refuses_one_path_and_bad_grammar(lab):
    for args, needle in ((["--path", "a=vm1->vm3"], "two paths or more"),
                         (["--path", "a=vm1", "--path", "b=vm2->vm3"], "expected LABEL=FROM->TO"),
                         (["--path", "a=vm1->vm3", "--path", "a=vm2->vm3"], "two paths are labelled 'a'")):
        r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "compare", *args], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
