"""Tracing on a real lab: drops match counters, paths list devices, nothing left behind.

Trace events name devices, not namespaces, and other users of this machine may
run labs with the default device names at the same time; so these tests build
their own lab whose every device name is unique to this test run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vnetdiag.system import tracefs

pytestmark = pytest.mark.root
T = f"q{os.getpid() % 10000:04d}"  # device name tag, unique per test run (<= 15 chars with suffixes)
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


def _spec(prefix: str) -> dict:
    d = lambda s: f"{T}{s}"  # noqa: E731
    return {
        "prefix": prefix,
        "nodes": {"fabric": {"role": "switch", "bridges": [d("bf")]},
                  "hv1": {"role": "hypervisor", "bridges": [d("b1")], "firewall": True},
                  "hv2": {"role": "hypervisor", "bridges": [d("b2")]},
                  "vm1": {"role": "guest"}, "vm2": {"role": "guest"}, "vm3": {"role": "guest"}},
        "veth": [
            {"a": {"node": "hv1", "name": d("u1"), "address": "192.0.2.1/24", "mtu": 1600},
             "b": {"node": "fabric", "name": d("h1"), "master": d("bf"), "mtu": 1600}},
            {"a": {"node": "hv2", "name": d("u2"), "address": "192.0.2.2/24", "mtu": 1600},
             "b": {"node": "fabric", "name": d("h2"), "master": d("bf"), "mtu": 1600}},
            {"a": {"node": "vm1", "name": d("e1"), "address": "198.51.100.1/24"},
             "b": {"node": "hv1", "name": d("p1"), "master": d("b1")}},
            {"a": {"node": "vm3", "name": d("e3"), "address": "198.51.100.3/24"},
             "b": {"node": "hv2", "name": d("p3"), "master": d("b2")}},
            {"a": {"node": "hv1", "name": d("l")}, "b": {"node": "hv1", "name": d("lp"), "master": d("b1")}},
        ],
        "vxlan": [
            {"node": "hv1", "name": d("x1"), "vni": 100, "underlay": d("u1"), "local": "192.0.2.1",
             "remotes": ["192.0.2.2"], "master": d("b1")},
            {"node": "hv2", "name": d("x2"), "vni": 100, "underlay": d("u2"), "local": "192.0.2.2",
             "remotes": ["192.0.2.1"], "master": d("b2")},
        ],
        "macvtap": [{"node": "hv1", "name": d("tap"), "lower": d("l"),
                     "guest": {"node": "vm2", "name": d("e2"), "address": "198.51.100.2/24"}}],
    }


@pytest.fixture(scope="module")
def tlab():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "vnt") + "t"
    s = spec.parse(_spec(prefix), "<test_tracing>")
    lab_mod.down(prefix)
    the_lab = lab_mod.up(s)
    try:
        yield the_lab
    finally:
        assert not lab_mod.down(prefix)


@pytest.fixture
def lab(tlab):
    tlab.clear_faults()
    for guest in ("vm2", "vm3"):  # resolve ARP, so bursts are not held in the neighbour queue
        tlab.run("vm1", ["ping", "-c1", "-W2", tlab.ip(guest)], check=True)
    yield tlab
    tlab.clear_faults()


def _udp_burst(lab, node: str, dst: str, count: int, size: int = 1000) -> None:
    code = ("import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for _ in range({count}): s.sendto(b'x'*{size}, ('{dst}', 9))")
    lab.run(node, ["python3", "-c", code], check=True, timeout=20)


def _window(lab, events="drops"):
    from vnetdiag.collect.tracewindow import trace_window

    return trace_window(events=events, namespaces=[f"{lab.prefix}-*"])


def _count(result, device, reason):
    return sum(d.count for d in result.drops if d.device == device and d.reason == reason)


def _ns(lab, node):
    return lab.netns(node)


def test_loss_gives_netfilter_drop_equal_to_rule_counter(lab):
    lab.add_fault("loss", at=f"hv1:{T}p1", percent=30)
    with _window(lab) as w:
        _udp_burst(lab, "vm1", lab.ip("vm3"), 200, size=200)
    out = subprocess.run(["ip", "netns", "exec", _ns(lab, "hv1"), "iptables", "-w", "-t", "raw", "-L", "PREROUTING",
                          "-v", "-n", "-x"], capture_output=True, text=True, check=True).stdout
    rule = [ln for ln in out.splitlines() if "statistic" in ln]
    pkts = int(rule[0].split()[0])
    drops = [d for d in w.result.drops if d.device == f"{T}p1" and d.reason == "NETFILTER_DROP"]
    assert pkts > 20
    assert sum(d.count for d in drops) == pkts
    assert drops[0].netns == _ns(lab, "hv1")
    assert w.result.completeness.complete


def test_queue_overflow_gives_qdisc_drop_equal_to_tc_drops(lab):
    lab.add_fault("queue-overflow", at=f"hv1:{T}x1")
    with _window(lab) as w:
        _udp_burst(lab, "vm1", lab.ip("vm3"), 5000)  # a drop storm: thousands of drops per second
    tc = subprocess.run(["tc", "-n", _ns(lab, "hv1"), "-s", "qdisc", "show", "dev", f"{T}x1"],
                        capture_output=True, text=True, check=True).stdout
    dropped = int(re.search(r"dropped (\d+)", tc).group(1))
    assert dropped > 100
    assert _count(w.result, f"{T}x1", "QDISC_DROP") == dropped
    assert any(d.netns == _ns(lab, "hv1") for d in w.result.drops if d.device == f"{T}x1")


def test_slow_guest_gives_macvtap_full_ring_equal_to_rx_dropped(lab):
    before = _rx_dropped(lab, f"{T}tap")
    lab.add_fault("slow-guest", at=f"hv1:{T}tap")
    with _window(lab) as w:
        _udp_burst(lab, "vm1", lab.ip("vm2"), 100, size=500)
    dropped = _rx_dropped(lab, f"{T}tap") - before
    assert dropped > 50
    # The packet was last seen on the macvtap's lower device; the location names the macvtap.
    # The trace sees the whole machine: other runs' labs have full macvtap rings too.
    # Ours are the drops placed in this lab's hv1 (its device names are this run's).
    got = [d for d in w.result.drops if d.reason == "FULL_RING" and d.location == "tap_handle_frame"
           and d.netns == _ns(lab, "hv1")]
    assert sum(d.count for d in got) == dropped
    assert {d.device for d in got} == {f"{T}l"}


def _rx_dropped(lab, dev) -> int:
    out = subprocess.run(["ip", "-n", _ns(lab, "hv1"), "-j", "-s", "link", "show", dev], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]["stats64"]["rx"]["dropped"]


def test_ping_across_overlay_gives_ordered_path(lab):
    with _window(lab, events="paths") as w:
        lab.run("vm1", ["ping", "-c3", "-i0.2", lab.ip("vm3")], check=True)
    want = [f"{T}{s}" for s in ("e1", "p1", "x1", "u1", "h1", "h2", "u2", "x2", "p3", "e3")]
    paths = [p for p in w.result.paths if p.devices[0] == f"{T}e1" and p.devices[-1] == f"{T}e3"]
    assert paths, [p.devices for p in w.result.paths]
    devices = [d for d in paths[0].devices if d in want]
    assert devices == want
    ns = dict(zip(paths[0].devices, paths[0].netns))
    assert ns[f"{T}x1"] == _ns(lab, "hv1") and ns[f"{T}u2"] == _ns(lab, "hv2") and ns[f"{T}h1"] == _ns(lab, "fabric")
    assert all(h.p50_us >= 0 for h in paths[0].hops)


# -- nothing left behind

def _instance_gone(pid: int, deadline_s: float = 10.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if f"vnetdiag-{pid}" not in tracefs.list_instances():
            return True
        time.sleep(0.05)
    return False


def _start_drops(env) -> subprocess.Popen:
    p = subprocess.Popen([VNETDIAG, "drops", "--backend", "tracefs", "--duration", "60", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if _tracer_ready(tracefs.TRACEFS_ROOT / "instances" / f"vnetdiag-{p.pid}"):
            return p
        time.sleep(0.05)
    p.kill()
    raise AssertionError("tracer did not start")


def _tracer_ready(inst: Path) -> bool:
    """The Tracer has finished setting up its instance. The kernel creates an
    instance's directory before its files, and a new instance starts with
    tracing_on=1; the Tracer writes 0 there, enables its events, then writes 1.
    So ready is: skb:kfree_skb enabled and tracing_on back at 1 (read in that
    order). A file not there yet is an instance still being created."""
    try:
        enabled = (inst / "set_event").read_text().split()
        return "skb:kfree_skb" in enabled and (inst / "tracing_on").read_text().strip() == "1"
    except FileNotFoundError:
        return False


@pytest.fixture
def state_env(tmp_path):
    return {**os.environ, "VNETDIAG_STATE_DIR": str(tmp_path / "state"),
            # Not this run's lab prefix: cleanup in this empty state would sweep its lab as lost.
            "VNETDIAG_LAB_PREFIX": f"x{os.getpid() % 1000000}"}


def test_normal_exit_removes_instance_and_events(state_env, tmp_path):
    p = subprocess.Popen([VNETDIAG, "drops", "--backend", "tracefs", "--duration", "0.5", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=state_env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "vnetdiag.drops/1" and "complete" in doc and "events_lost" in doc
    # Its own instance: other runs on this machine may have tracers of their own.
    assert f"vnetdiag-{p.pid}" not in tracefs.list_instances()
    assert not list((tmp_path / "state" / "journals").glob("*.jsonl"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_removes_instance(state_env, tmp_path, sig):
    p = _start_drops(state_env)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert _instance_gone(p.pid), (p.returncode, err)
    assert out and json.loads(out)["schema"] == "vnetdiag.drops/1", (p.returncode, err)
    assert not list((tmp_path / "state" / "journals").glob("*.jsonl"))


def test_sigkill_then_cleanup_removes_instance(state_env, tmp_path):
    from vnetdiag.system.cleanup import TRACING_SWEEP_LOCK, CleanupReport, sweep_tracing_instances
    from vnetdiag.system.undo import all_journals, machine_lock

    p = _start_drops(state_env)
    # Every tracer that starts on this machine (another test run's too) sweeps
    # the instances of dead tracers: hold the sweep lock while we look at ours.
    with machine_lock(TRACING_SWEEP_LOCK):
        p.kill()
        p.wait(timeout=10)
        name = f"vnetdiag-{p.pid}"
        assert name in tracefs.list_instances()  # SIGKILL left it: now clean up
        journals = all_journals(tmp_path / "state" / "journals")
        assert [j.owner for j in journals] == [f"trace-{p.pid}"] and not journals[0].owner_alive()
        assert journals[0].undo() == []
        assert name not in tracefs.list_instances()  # the journal alone removed it
        sweep_tracing_instances(CleanupReport())
        assert name not in tracefs.list_instances()
