"""nft monitor trace output (recorded by tests/golden/nftrace/record.py) read
into per-rule counts of the probe's dropped packets, checked against the
rules' own counters recorded in the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnetdiag.collect import nftrace
from vnetdiag.model.bundle import ProbeFlows

G = Path(__file__).parent / "nftrace"


def _counters() -> dict[int, int]:
    """Rule handle -> packets, for the recorded fw table's counted rules."""
    out = {}
    for item in json.loads((G / "ruleset.json").read_text())["nftables"]:
        rule = item.get("rule")
        if rule and rule["table"] == "fw":
            out[rule["handle"]] = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return out


def test_each_dropped_probe_packet_is_counted_once_at_its_rule_despite_reused_trace_ids():
    mon = nftrace._Monitor(ns=None, proc=None)
    for line in (G / "monitor.txt").read_text().splitlines():
        nftrace.parse_line(line, 7777, mon)
    got = {(t.table, t.chain, t.handle): t for t in nftrace.tally(1, mon.drops)}
    counters = _counters()
    fwd, rev = got[("fw", "relay", 2)], got[("fw", "relay", 3)]
    assert (fwd.forward, fwd.reverse) == (counters[2], 0) == (5, 0)
    assert (rev.forward, rev.reverse) == (0, counters[3]) == (0, 3)
    assert fwd.rule == "udp dport 7777 counter drop" and fwd.family == "inet"
    assert set(got) == {("fw", "relay", 2), ("fw", "relay", 3)}  # the marking table never drops


def test_packets_of_other_ports_are_not_the_probes():
    mon = nftrace._Monitor(ns=None, proc=None)
    for line in (G / "monitor.txt").read_text().splitlines():
        nftrace.parse_line(line, 7778, mon)
    assert mon.drops == []


def test_the_marking_table_follows_both_directions_of_the_probe_only():
    text = nftrace.ruleset(ProbeFlows(proto=6, client="2001:db8::1", server="2001:db8::2", server_port=4000), "t")
    assert "ip6 daddr 2001:db8::2 meta l4proto tcp th dport 4000 meta nftrace set 1" in text
    assert "ip6 saddr 2001:db8::2 meta l4proto tcp th sport 4000 meta nftrace set 1" in text
    assert text.count("hook prerouting priority -350") == 1 and text.count("hook output priority -350") == 1
    with pytest.raises(ValueError):
        nftrace.ruleset(ProbeFlows(proto=1, client="10.0.0.1", server="10.0.0.2", server_port=0), "t")


def test_a_netlink_overflow_the_monitor_reports_is_counted():
    """libnftables prints this line on stdout when its socket overflowed (ENOBUFS)."""
    from types import SimpleNamespace

    lines = (G / "monitor.txt").read_text().splitlines(keepends=True)
    lost = "# ERROR: We lost some netlink events!\n"
    mon = nftrace._Monitor(ns=None, proc=SimpleNamespace(stdout=[lost, *lines, lost]))
    t = nftrace.NftTrace([], ProbeFlows(proto=17, client="10.78.0.1", server="10.78.1.2", server_port=7777))
    t._read(mon)
    assert mon.overflows == 2 and len(mon.drops) == 8
