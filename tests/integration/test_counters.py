"""Counters on real namespaces: equal to iproute2/nstat/conntrack, and a fault
moves exactly the counter it should."""

import json
import subprocess
import time

import pytest

from vnetdiag.analyze.deltas import delta
from vnetdiag.collect import Collector, snapshot
from vnetdiag.testing.plugin import derived_prefix

pytestmark = pytest.mark.root


def _lab_only(lab):
    return lambda ns: bool(ns.name) and ns.name.startswith(lab.prefix + "-")


def _sh(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _stable(read, compare, deadline_s=10.0):
    """Read the reference before and after our snapshot until it did not move in
    between (lab interfaces are quiet but not silent: IPv6 ND, ARP)."""
    deadline = time.monotonic() + deadline_s
    while True:
        before = read()
        ours = compare()
        after = read()
        if before == after:
            return before, ours
        assert time.monotonic() < deadline, "reference kept moving"


def test_link_stats_equal_ip_s_s(lab):
    ns = lab.netns("hv1")
    with Collector(only=lambda n: n.name == ns) as col:
        ref, snap = _stable(lambda: _sh("ip", "-n", ns, "-s", "-s", "-j", "link"), col.snapshot)
    ip = {d["ifname"]: d["stats64"] for d in json.loads(ref)}
    ours = {i.interface.name: i.stats for i in snap.interfaces}
    assert set(ours) == set(ip)
    for name, st in ours.items():
        rx, tx = ip[name]["rx"], ip[name]["tx"]
        for k in ("bytes", "packets", "errors", "dropped", "over_errors", "crc_errors", "frame_errors",
                  "fifo_errors", "missed_errors", "length_errors"):
            assert st[f"rx_{k}"] == rx[k], (name, k)
        for k in ("bytes", "packets", "errors", "dropped", "aborted_errors", "fifo_errors", "window_errors",
                  "heartbeat_errors", "carrier_errors"):
            assert st[f"tx_{k}"] == tx[k], (name, k)
        assert st["collisions"] == tx["collisions"]


def test_qdiscs_equal_tc_and_fault_moves_only_that_qdisc(lab):
    ns = lab.netns("hv1")
    # Resolve neighbours and teach the FDBs first: an unresolved neighbour would
    # hold back (and drop) the burst before it reaches the queue under test.
    lab.run("vm3", ["ping", "-c1", "-W2", lab.ip("vm1")])
    lab.add_fault("queue-overflow", at="hv1:vm1-p")
    with Collector(only=_lab_only(lab)) as col:
        ref, snap = _stable(lambda: _sh("tc", "-n", ns, "-s", "-j", "qdisc", "show"), col.snapshot)
        ifname = {i.interface.ref.ifindex: i.interface.name for i in snap.interfaces if i.interface.netns_name == ns}
        ours = {(i.interface.name, q.handle, q.kind): q for i in snap.interfaces
                if i.interface.netns_name == ns for q in i.qdiscs}
        for r in json.loads(ref):
            q = ours[(r["dev"], r["handle"], r["kind"])]
            assert (q.packets, q.bytes, q.drops, q.overlimits, q.requeues, q.backlog_bytes, q.backlog_packets) == (
                r["packets"], r["bytes"], r["drops"], r["overlimits"], r["requeues"], r["backlog"], r["qlen"])
        assert ifname
        # A UDP burst to vm1 leaves hv1 through vm1-p, where the tiny tbf queue
        # overflows (ping would pace itself on the replies and never fill it).
        blast = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 f"for _ in range(300): s.sendto(b'x' * 1400, ('{lab.ip('vm1')}', 9))")
        lab.run("vm3", ["python3", "-c", blast])
        after = col.snapshot()
    d = delta(snap, after)
    drop_moves = set()
    for i in d.interfaces:
        for m in i.stats:
            if "drop" in m.name:
                drop_moves.add((i.netns_name, i.name, m.name))
        for q in i.qdiscs:
            for m in q.moves:
                if m.name == "drops":
                    drop_moves.add((i.netns_name, i.name, f"qdisc {q.kind} drops"))
                    assert m.delta > 0
    # The tbf and its inner (kernel-made, invisible to plain tc) bfifo count the
    # same drops; nothing else in the lab counted any.
    assert (ns, "vm1-p", "qdisc tbf drops") in drop_moves
    assert {(n, dev) for n, dev, _ in drop_moves} == {(ns, "vm1-p")}


def test_snmp_equal_nstat_and_conntrack_equal_conntrack_S(lab):
    ns = lab.netns("vm3")
    with Collector(only=lambda n: n.name == ns) as col:
        ref, snap = _stable(lambda: _sh("ip", "netns", "exec", ns, "nstat", "-asz", "--json"), col.snapshot)
    nstat = json.loads(ref)["kernel"]
    (st,) = snap.netns_stats
    flat = {f"{sec}{name}": v for sec, vals in st.snmp.items() for name, v in vals.items()}
    flat.update(st.snmp6)
    common = set(nstat) & set(flat)
    assert len(common) > 200
    assert {k: flat[k] for k in common} == {k: nstat[k] for k in common}

    fw = lab.netns("hv1")
    with Collector(only=lambda n: n.name == fw) as col:
        def conntrack_s():
            return _sh("ip", "netns", "exec", fw, "conntrack", "-S"), _sh("ip", "netns", "exec", fw, "conntrack", "-C")
        (stats, count), snap = _stable(conntrack_s, col.snapshot)
    (st,) = snap.netns_stats
    assert st.conntrack is not None and st.conntrack.count == int(count)
    for line, ours in zip(stats.splitlines(), st.conntrack.per_cpu):
        theirs = dict(kv.split("=") for kv in line.split())
        for k in ("found", "invalid", "insert_failed", "drop", "early_drop", "search_restart"):
            assert ours[k] == int(theirs[k]), k


def test_veth_peers_resolved_across_namespaces(lab):
    snap = snapshot(only=_lab_only(lab))
    by_name = {(i.interface.netns_name, i.interface.name): i.interface for i in snap.interfaces}
    vm1p = by_name[(lab.netns("hv1"), "vm1-p")]
    eth0 = by_name[(lab.netns("vm1"), "eth0")]
    assert vm1p.link == eth0.ref and eth0.link == vm1p.ref
    assert by_name[(lab.netns("hv1"), "vx0")].vxlan.vni == 100
    assert by_name[(lab.netns("hv1"), "mvtap0")].kind == "macvtap"
    assert by_name[(lab.netns("vm2"), "eth0")].tun.type == "tap"


def test_deleted_namespace_is_released_and_reported():
    # Names of this run's own: another run on this machine may run this test too.
    name, peer = f"{derived_prefix('g')}-gone", f"{derived_prefix('g')}0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "link", "add", peer, "type", "veth", "peer", "name", "eth9", "netns", name], check=True)
        with Collector(only=lambda n: n.name in (name, "host")) as col:
            a = col.snapshot()
            assert any(i.interface.name == "eth9" for i in a.interfaces)
            subprocess.run(["ip", "netns", "delete", name], check=True)
            b = col.snapshot()
        d = delta(a, b)
        assert any(n.status == "disappeared" and n.netns_name == name for n in d.namespaces)
        assert any(i.status == "disappeared" and i.name == "eth9" for i in d.interfaces)
        # Our sockets no longer hold the namespace: its veth end goes, taking the host end.
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "link", "show", peer], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "namespace kept alive by vnetdiag"
            time.sleep(0.05)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["ip", "link", "delete", peer], capture_output=True)


def test_cli_counters_json_watch_and_errors(lab, cli):
    ns = lab.netns("hv1")
    r = cli("counters", "--netns", ns, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "vnetdiag.counters/1"
    assert {"namespaces", "interfaces", "netns_stats", "softnet"} <= set(doc)
    iface = next(i for i in doc["interfaces"] if i["name"] == "vm1-p")
    assert {"netns_inode", "netns_name", "ifindex", "name", "kind", "stats", "queues", "qdiscs"} <= set(iface)
    assert "rx_nohandler" in iface["stats"] and iface["queues"][0]["direction"] in ("rx", "tx")
    r = cli("counters", "--netns", ns, "--watch", "0.2", "--count", "2", "--json")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 2
    assert json.loads(lines[1])["schema"] == "vnetdiag.counters-delta/1"
    r = cli("counters", "--netns", "cnt-no-such-ns")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = cli("inventory", "--netns", ns)
    assert r.returncode == 0 and "vm1-p" in r.stdout


def test_without_root_reads_own_namespace_and_says_what_needs_root(lab):
    import os
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("vnetdiag"))
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                        exe, "counters", "--json"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HOME": "/tmp"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [n["name"] for n in doc["namespaces"]] == ["host"]
    assert any(i["name"] == "lo" for i in doc["interfaces"])
    assert any(p["where"] == lab.netns("hv1") and "needs root" in p["what"] for p in doc["problems"])


def test_sockets_are_kept_and_caches_follow_device_churn():
    name = f"{derived_prefix('c')}-churn"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with Collector(only=lambda n: n.name == name) as col:
            col.snapshot()
            (handle,) = [h for h in col.pool.handles.values() if h.ns.name == name]
            sock = handle.nl
            for i in range(4):
                subprocess.run(["ip", "-n", name, "link", "add", f"c{i}", "type", "veth", "peer", "name", f"d{i}"],
                               check=True)
                mid = col.snapshot()
                assert {f"c{i}", f"d{i}"} <= {x.interface.name for x in mid.interfaces}
                subprocess.run(["ip", "-n", name, "link", "del", f"c{i}"], check=True)
                last = col.snapshot()
            assert col.pool.handles[handle.ns.inode].nl is sock  # one socket for the whole run
            assert [x.interface.name for x in last.interfaces] == ["lo"]
            assert {k[1] for k in handle.cache} == {1}  # only lo's cached details remain
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
