"""HOST:NAMESPACE forms of counters, topology, path and drops (cli/hostforms.py) on
three simulated hosts with their own sshd (testing/fleetsim.py): each command
reaches the host's agent over ssh and reports only what that host's agent sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vnetdiag.system import nsexec
from vnetdiag.testing.fleetsim import SimFleet
from vnetdiag.testing.plugin import derived_prefix
from vnetdiag.testing.simbase import wait_for

pytestmark = pytest.mark.root

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimFleet(tmp_path_factory.mktemp("hostforms"), prefix=derived_prefix("q")) as s:
        yield s


def cli(sim, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VNETDIAG, "--json", *args[:1], "--hosts", str(sim.inventory), *args[1:]],
                          capture_output=True, text=True, timeout=60)


def test_counters_of_two_hosts_each_named(sim):
    r = cli(sim, "counters", "--netns", f"h1:{sim.guest(1)}", "--netns", f"h3:{sim.guest(3)}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "vnetdiag.hosts/1"
    by_host = {d["host"]: d for d in doc["documents"]}
    assert set(by_host) == {"h1", "h3"}
    for i in (1, 3):
        d = by_host[f"h{i}"]
        assert d["schema"] == "vnetdiag.counters/1"
        assert [n["name"] for n in d["namespaces"]] == [sim.guest(i)], d["namespaces"]
        assert {i["name"] for i in d["interfaces"]} == {"lo", "eth0"}


def test_counters_of_a_namespace_outside_the_agents_scope_is_one_line(sim):
    # h1's guest exists on this kernel, but h2's agent is scoped to h2's namespaces.
    r = subprocess.run([VNETDIAG, "counters", "--hosts", str(sim.inventory), "--netns", f"h2:{sim.guest(1)}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"vnetdiag: h2: no namespace matches {sim.guest(1)} (its scope: "), r.stderr
    assert "Traceback" not in r.stderr


def test_topology_of_one_host_is_its_scope(sim):
    r = cli(sim, "topology", "--netns", "h2:*")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["host"] == "h2" and doc["schema"].startswith("vnetdiag.topology/")
    devices = {n["name"] for n in doc["nodes"] if n.get("kind") != "namespace"}
    assert {"eth1", "eth3", "br0", "vx0", "gw", "eth0"} <= devices, devices
    assert "eth2" not in devices  # h1's and h3's underlay ends are other agents'


def test_path_across_hosts_walks_each_end_on_its_host(sim):
    nsexec.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", sim.guest_ip(3)], netns=f"/run/netns/{sim.guest(1)}")
    r = cli(sim, "path", f"h1:{sim.guest(1)}", f"h3:{sim.guest(3)}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    there, back = doc["paths"]
    assert (there["host"], there["dst_address"]) == ("h1", sim.guest_ip(3))
    assert (back["host"], back["dst_address"]) == ("h3", sim.guest_ip(1))
    for p in (there, back):
        # The guest's eth0, its veth peer on the host, the bridge, out by the vxlan (learned by the ping).
        assert [h["name"] for h in p["hops"]][:4] == ["eth0", "gw", "br0", "vx0"], p["hops"]


def test_drops_on_a_host_during_a_loss(sim):
    rule = ["FORWARD", "-i", "eth1", "-p", "udp", "--dport", "4789", "-m", "statistic", "--mode", "random",
            "--probability", "0.5", "-j", "DROP"]
    h2 = f"/run/netns/{sim.host(2)}"
    nsexec.run(["iptables", "-A", *rule], netns=h2)
    ping = nsexec.popen(["ping", "-i", "0.01", "-w", "30", sim.guest_ip(3)], netns=f"/run/netns/{sim.guest(1)}",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = cli(sim, "drops", "--netns", "h2:*", "--duration", "2")
    finally:
        ping.terminate()
        ping.wait()
        nsexec.run(["iptables", "-D", *rule], netns=h2)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["host"] == "h2"
    hit = [d for d in doc["drops"] if d["device"] == "eth1" and d["reason"] == "NETFILTER_DROP"]
    assert hit and hit[0]["count"] > 0, doc["drops"]
    wait_for(lambda: not agents(sim), what="the agents to exit")


def agents(sim) -> list[int]:
    """Running agents scoped to this sim's namespaces."""
    out = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = p.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in argv and any(a.startswith(sim.prefix.encode()) for a in argv):
            out.append(int(p.parent.name))
    return out


def test_vnetdiag_command_of_several_words(sim, tmp_path):
    """vnetdiag_command='env VNETDIAG_… /path/vnetdiag' (as 'sudo -n vnetdiag' would be) runs the agent."""
    import shlex

    inventory = tmp_path / "hosts.ini"
    inventory.write_text(sim.inventory_text(command={2: shlex.quote(f"env LC_ALL=C {sim.vnetdiag}")}))
    r = subprocess.run([VNETDIAG, "--json", "counters", "--hosts", str(inventory), "--netns", f"h2:{sim.guest(2)}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["host"] == "h2"


def test_counters_watch_on_a_host_ticks_on_our_clock(sim):
    r = cli(sim, "counters", "--netns", "h2:host", "--watch", "0.3", "--count", "2")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 2, r.stdout[:500]
    # Intervals measured on the agent's clock, ticked on ours (moved by its offset): ~0.3 s each.
    intervals = [d["interval_s"] for d in lines]
    assert all(0.2 < s < 1.0 for s in intervals), intervals
