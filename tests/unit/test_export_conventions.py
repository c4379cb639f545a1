"""Exporter conventions: build_info, node_exporter's names, counters typed as
counters, scrape success per namespace (recorded lab snapshots, no root)."""

from __future__ import annotations

import dataclasses
import urllib.request
from pathlib import Path

from vnetdiag import __version__
from vnetdiag.export.metrics import NETSTAT_GAUGES, Filters, build_families, netns_success, snapshot_families
from vnetdiag.export.server import MetricsServer
from vnetdiag.model.counters import Problem
from vnetdiag.watch import recording

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "watch"


def _snap():
    return recording.load(GOLDEN / "conntrack-full.jsonl.gz")[1][-1]


def test_node_exporter_names_and_types():
    fams = {f.name: f for f in snapshot_families(_snap())}
    assert fams["vnetdiag_softnet_backlog_len"].type == "gauge"
    assert "vnetdiag_softnet_backlog_packets" not in fams
    assert fams["vnetdiag_netstat_Tcp_RetransSegs"].type == "counter"
    assert fams["vnetdiag_netstat_Tcp_CurrEstab"].type == "gauge" and "Tcp_CurrEstab" in NETSTAT_GAUGES
    assert fams["vnetdiag_nf_conntrack_stat_drop"].type == "counter"
    assert fams["vnetdiag_nf_conntrack_entries"].type == "gauge"
    drop = [s for s in fams["vnetdiag_nf_conntrack_stat_drop"].samples if s.value > 0]
    assert drop and all(s.name == "vnetdiag_nf_conntrack_stat_drop_total" for s in drop)


def test_scrape_success_per_namespace():
    snap = _snap()
    labels = {n.label for n in snap.namespaces}
    assert netns_success(snap) == {label: True for label in labels}
    one = sorted(labels)[0]
    broken = dataclasses.replace(snap, problems=(
        Problem(where=one, what="netlink dump failed: [Errno 1] Operation not permitted"),
        Problem(where=f"{sorted(labels)[1]}/eth0", what="ethtool -S: Operation not supported"),
        Problem(where="netns:4026539999", what="cannot enter: needs root")))
    ok = netns_success(broken)
    assert ok[one] is False and ok["netns:4026539999"] is False
    assert ok[sorted(labels)[1]] is True  # one device's driver counters are not the namespace
    fam = {f.name: f for f in snapshot_families(broken)}["vnetdiag_scrape_netns_success"]
    assert {s.labels["netns"]: s.value for s in fam.samples} == {k: float(v) for k, v in ok.items()}


def test_build_info_is_served(tmp_path):
    (info,) = build_families()
    assert info.name == "vnetdiag_build_info" and info.samples[0].labels["version"] == __version__
    snap = _snap()
    server = MetricsServer(lambda: (snap, None), Filters(), "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.close()
    assert f'vnetdiag_build_info{{pythonversion="' in text and f'version="{__version__}"' in text
    assert "# TYPE vnetdiag_netstat_Tcp_RetransSegs_total counter" in text or \
        "# TYPE vnetdiag_netstat_Tcp_RetransSegs counter" in text
    assert 'vnetdiag_scrape_netns_success{netns="' in text
