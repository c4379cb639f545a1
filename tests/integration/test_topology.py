"""Topology discovery, path resolution and views on real namespaces."""

import json
import subprocess
import time

import pytest

from vnetdiag.collect import Collector
from vnetdiag.testing.plugin import derived_prefix
from vnetdiag.topology import discover
from vnetdiag.topology.path import resolve
from vnetdiag.topology.routes import kernel_lookup
from vnetdiag.topology.views import document, html

pytestmark = pytest.mark.root


def _discover(only):
    with Collector(only=only, driver_stats=False) as col:
        topo = discover(col.snapshot(), col.pool)
        return topo, col


def _label(topo):
    ns = {n.inode: n.label for n in topo.namespaces}
    names = {x.id: (ns[x.ref.netns_inode], x.name) for x in topo.interfaces}
    names.update({n.id: n.name for n in topo.nodes if n.type == "process"})
    return names


def _ping_all(lab):
    """Every guest pings every other once (the FDBs and neighbour tables learn).
    No other lab's conntrack-full fault lowers nf_conntrack_max meanwhile: root
    tests hold the global settings shared (testing/plugin.py)."""
    for a in lab.guests:
        for b in lab.guests:
            if a != b:
                assert lab.run(a, ["ping", "-c1", "-W2", lab.ip(b)], check=False).returncode == 0, f"{a} cannot ping {b}"


def test_lab_graph_equals_its_description(lab):
    _ping_all(lab)  # the FDBs learn the guests' MACs
    topo, _ = _discover(lambda n: bool(n.name) and n.name.startswith(lab.prefix + "-"))
    names = _label(topo)
    edges = {(e.type, names[e.source], names[e.target]) for e in topo.edges}
    undirected = edges | {(t, b, a) for t, a, b in edges}
    for v in lab.spec.veths:
        a, b = (lab.netns(v.a.node), v.a.name), (lab.netns(v.b.node), v.b.name)
        assert ("veth-peer", a, b) in undirected
        for end in (v.a, v.b):
            if end.master:
                assert ("master", (lab.netns(end.node), end.name), (lab.netns(end.node), end.master)) in edges
    for x in lab.spec.vxlans:
        dev = (lab.netns(x.node), x.name)
        assert ("lower", dev, (lab.netns(x.node), x.underlay)) in edges
        node = next(i for i in topo.interfaces if (names[i.id]) == dev)
        assert node.vxlan.vni == x.vni and node.vxlan.local == x.local
        assert any(t == "vxlan" and s == dev for t, s, _ in edges)
    for m in lab.spec.macvtaps:
        dev, guest = (lab.netns(m.node), m.name), (lab.netns(m.guest.node), m.guest.name)
        assert ("lower", dev, (lab.netns(m.node), m.lower)) in edges
        backend = next(b for b in lab.backends if b["macvtap"] == f"{m.node}:{m.name}")
        owners = {s for t, s, d in edges if t == "tap-owner" and d == dev}
        assert owners == {s for t, s, d in edges if t == "tap-owner" and d == guest}
        assert any(f"[{backend['pid']}]" in o for o in owners)
    fdb = {(s, d) for t, s, d in edges if t == "fdb"}
    assert ((lab.netns("hv1"), "vm1-p"), (lab.netns("vm1"), "eth0")) in fdb


def test_paths_between_every_pair_of_guests(lab):
    _ping_all(lab)
    with Collector(only=lambda n: bool(n.name) and n.name.startswith(lab.prefix + "-"), driver_stats=False) as col:
        topo = discover(col.snapshot(), col.pool)
        lookup = kernel_lookup(col.pool)
        results = {(a, b): resolve(topo, lookup, lab.netns(a), lab.netns(b))
                   for a in lab.guests for b in lab.guests if a != b}
    for (a, b), r in results.items():
        assert r.complete, (a, b, r.stopped)
        assert r.hops[0].netns_name == lab.netns(a) and r.hops[-1].netns_name == lab.netns(b)
    n = lab.netns
    seq = [(h.netns_name, h.name) for h in results[("vm1", "vm3")].hops if h.role != "process"]
    assert seq == [(n("vm1"), "eth0"), (n("hv1"), "vm1-p"), (n("hv1"), "br0"), (n("hv1"), "vx0"), (n("hv1"), "vx0"),
                   (n("hv1"), "ul0"), (n("fabric"), "hv1-p"), (n("fabric"), "br0"), (n("fabric"), "hv2-p"),
                   (n("hv2"), "ul0"), (n("hv2"), "vx0"), (n("hv2"), "br0"), (n("hv2"), "vm3-p"), (n("vm3"), "eth0"),
                   (n("vm3"), "eth0")]
    back = [(h.netns_name, h.name) for h in results[("vm3", "vm1")].hops]
    assert back[1] == (n("hv2"), "vm3-p") and back[-2] == (n("vm1"), "eth0")
    to_vm2 = [(h.role, h.netns_name, h.name) for h in results[("vm1", "vm2")].hops]
    assert ("ingress", n("hv1"), "mvtap0") in to_vm2 and to_vm2[-1][1:] == (n("vm2"), "eth0")
    assert any(role == "process" for role, _, _ in to_vm2)


def test_a_path_with_no_neighbour_entry_yet_takes_the_owners_mac(lab):
    _ping_all(lab)  # the FDBs learn every guest's MAC
    lab.run("vm1", ["ip", "neigh", "flush", "all"])  # as on a fresh link: ARP has not run
    with Collector(only=lambda n: bool(n.name) and n.name.startswith(lab.prefix + "-"), driver_stats=False) as col:
        snap = col.snapshot()
        topo = discover(snap, col.pool)
        r = resolve(topo, kernel_lookup(col.pool), lab.netns("vm1"), lab.netns("vm3"))
    vm3_eth0 = next(i for i in topo.interfaces if i.name == "eth0" and i.netns_name == lab.netns("vm3"))
    assert r.complete, r.stopped
    assert f"no neighbour entry for {lab.ip('vm3')} yet; taken as eth0's MAC {vm3_eth0.mac}" in r.hops[0].how
    assert (r.hops[-1].netns_name, r.hops[-1].name) == (lab.netns("vm3"), "eth0")


# Namespaces of this run's own (two runs on one machine never share them).
TW = derived_prefix("n")


@pytest.fixture
def twins():
    """t1/eth0 and t2/eth0: same name, same ifindex, in two namespaces, both
    plugged into bridge sw0 in t0, built with plain ip commands."""
    names = (f"{TW}-t0", f"{TW}-t1", f"{TW}-t2")
    for n in names:
        subprocess.run(["ip", "netns", "delete", n], capture_output=True)
    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
        sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        sh("ip", "-n", f"{TW}-t0", "link", "add", "sw0", "type", "bridge")
        sh("ip", "-n", f"{TW}-t0", "link", "set", "sw0", "up")
        for k in (1, 2):
            sh("ip", "-n", f"{TW}-t0", "link", "add", f"p{k}", "type", "veth", "peer", "name", "eth0", "netns", f"{TW}-t{k}")
            sh("ip", "-n", f"{TW}-t0", "link", "set", f"p{k}", "master", "sw0", "up")
            sh("ip", "-n", f"{TW}-t{k}", "addr", "add", f"10.99.0.{k}/24", "dev", "eth0")
            sh("ip", "-n", f"{TW}-t{k}", "link", "set", "eth0", "up")
            sh("ip", "-n", f"{TW}-t{k}", "link", "set", "lo", "up")
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)


def _ping(src, dst, deadline_s=10):
    deadline = time.monotonic() + deadline_s
    while subprocess.run(["ip", "netns", "exec", src, "ping", "-c1", "-W1", dst], capture_output=True).returncode:
        assert time.monotonic() < deadline, f"{src} cannot ping {dst}"


def test_same_ifindex_same_name_in_two_namespaces(twins):
    _ping(f"{TW}-t1", "10.99.0.2")
    only = lambda n: n.name in twins  # noqa: E731
    with Collector(only=only, driver_stats=False) as col:
        topo = discover(col.snapshot(), col.pool)
        lookup = kernel_lookup(col.pool)
        r12 = resolve(topo, lookup, f"{TW}-t1", f"{TW}-t2")
        r21 = resolve(topo, lookup, f"{TW}-t2", f"{TW}-t1")
    names = _label(topo)
    eth0s = [x for x in topo.interfaces if x.name == "eth0"]
    assert len(eth0s) == 2 and eth0s[0].ref.ifindex == eth0s[1].ref.ifindex
    peers = {names[e.source]: names[e.target] for e in topo.edges if e.type == "veth-peer"}
    peers.update({v: k for k, v in list(peers.items())})
    assert peers[(f"{TW}-t1", "eth0")] == (f"{TW}-t0", "p1")
    assert peers[(f"{TW}-t2", "eth0")] == (f"{TW}-t0", "p2")
    assert [(h.netns_name, h.name) for h in r12.hops] == [
        (f"{TW}-t1", "eth0"), (f"{TW}-t0", "p1"), (f"{TW}-t0", "sw0"), (f"{TW}-t0", "p2"), (f"{TW}-t2", "eth0"), (f"{TW}-t2", "eth0")]
    assert r12.complete and r21.complete and r21.hops[1].name == "p2"


def test_unlearned_mac_lists_flood_candidates(twins, cli):
    subprocess.run(["ip", "-n", f"{TW}-t0", "link", "set", "sw0", "type", "bridge", "ageing_time", "0"], check=True)
    _ping(f"{TW}-t1", "10.99.0.2")  # neighbours resolve; the bridge keeps no FDB entry
    r = cli("path", f"{TW}-t1", f"{TW}-t2", "--one-way")
    assert r.returncode == 1
    assert "not learned in the FDB" in r.stdout and f"flood candidates: {TW}-t0/p2" in r.stdout


def test_html_draws_every_node_in_chromium(twins, tmp_path):
    only = lambda n: n.name in twins  # noqa: E731
    topo, _ = _discover(only)
    page = tmp_path / "topology.html"
    page.write_text(html(topo))
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90).stdout
    from vnetdiag.topology.drawing import visible_nodes

    # Every node the drawing keeps (a loopback with no edge is left out of the picture).
    drawable = [n for n in visible_nodes(topo) if n.type != "netns"]
    assert len(drawable) >= len([n for n in topo.nodes if n.type != "netns" and n.name != "lo"])
    assert f'data-drawn="{len(drawable)}"' in dom
    for n in drawable:
        assert f'data-id="{n.id}"' in dom


def test_cli_topology_json_dot_diff_and_errors(twins, cli, tmp_path):
    r = cli("topology", "--netns", f"{TW}-t0", "--netns", f"{TW}-t1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "vnetdiag.topology/1"
    assert {e["type"] for e in doc["edges"]} >= {"veth-peer", "master"}
    assert all(n["id"].count(":") == 1 for n in doc["nodes"] if n["type"] == "interface")
    old = tmp_path / "old.json"
    old.write_text(r.stdout)
    subprocess.run(["ip", "-n", f"{TW}-t1", "link", "add", "extra0", "type", "veth", "peer", "name", "extra1"], check=True)
    r = cli("topology", "--netns", f"{TW}-t0", "--netns", f"{TW}-t1", "--diff", str(old))
    assert r.returncode == 0 and "appeared:" in r.stdout and f"{TW}-t1/extra0" in r.stdout
    r = cli("topology", "--netns", f"{TW}-t0", "--format", "dot")
    assert r.returncode == 0 and r.stdout.startswith("digraph") and '"p1"' not in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args in (("topology", "--diff", str(bad)), ("topology", "--diff", str(tmp_path / "missing.json")),
                 ("path", "cnt-no-such", f"{TW}-t1"), ("path", f"{TW}-t1:not-an-ip", f"{TW}-t2")):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert document(_discover(lambda n: n.name in twins)[0])["nodes"]
