"""The eBPF drop backend on real namespaces: exact namespace, flows, vxlan inner flows, cleanup.

Each test builds its own namespaces (named hb<tag>..., deleted at the end) and
drops with iptables rules whose packet counters are the reference.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import re
import signal
import socket
import subprocess
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from kernelgap import kernel_gap
from vnetdiag.system import netns, proc

pytestmark = pytest.mark.root
TAG = f"hb{os.getpid() % 10000:04d}"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


def sh(*argv: str) -> str:
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"{' '.join(argv)}: {out.stderr}"
    return out.stdout


@pytest.fixture
def make_ns():
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"{TAG}{suffix}"
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
        sh("ip", "netns", "add", name)
        made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def _needs_ebpf():
    from vnetdiag.collect.droptrace import ebpf_unusable

    why = ebpf_unusable()
    if why:
        pytest.skip(why)


def inode(name: str) -> int:
    return netns.inode_of(f"/run/netns/{name}")


def ifindex(ns: str, dev: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]["ifindex"]


def veth(ns_a: str, a: str, ns_b: str, b: str) -> None:
    """A veth pair created inside ``ns_a`` (so ifindexes are that namespace's), one end moved to ``ns_b``."""
    sh("ip", "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "-n", ns_a, "link", "set", b, "netns", ns_b)
    sh("ip", "-n", ns_a, "link", "set", a, "up")
    sh("ip", "-n", ns_b, "link", "set", b, "up")


def rule_packets(ns: str, tool: str, dport: int, proto: str) -> int:
    """The packet counter of the DROP rule matching ``proto dpt:dport`` (iptables -L -v -x)."""
    text = sh("ip", "netns", "exec", ns, tool, "-L", "INPUT", "-v", "-x", "-n")
    for line in text.splitlines():
        if f"dpt:{dport}" in line and "DROP" in line and (proto in line.split() or
                                                          str(socket.getprotobyname(proto)) in line.split()):
            return int(line.split()[0])
    raise AssertionError(f"no rule for {proto} dpt:{dport} in {text}")


def drop_rule(ns: str, tool: str, proto: str, dport: int, *extra: str) -> None:
    sh("ip", "netns", "exec", ns, tool, "-A", "INPUT", *extra, "-p", proto, "--dport", str(dport), "-j", "DROP")


def send_udp(ns: str, family: int, src: tuple, dst: tuple, n: int) -> None:
    with netns.entered(f"/run/netns/{ns}"):
        s = socket.socket(family, socket.SOCK_DGRAM)
    with s:
        s.bind(src)
        for _ in range(n):
            s.sendto(b"vnetdiag", dst)


def wait_for(cond, what: str, timeout_s: float = 15.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def records(t, pred) -> list:
    return [p for p in t.snapshot().packets if pred(p)]


def test_same_ifindex_in_two_namespaces_is_attributed_exactly(make_ns):
    from vnetdiag.collect.droptrace import drop_trace

    a, b, pa, pb = make_ns("a"), make_ns("b"), make_ns("pa"), make_ns("pb")
    for ns, peer in ((a, pa), (b, pb)):
        veth(ns, "eth0", peer, "p0")
        sh("ip", "-n", ns, "addr", "add", "10.201.0.1/24", "dev", "eth0")
        sh("ip", "-n", peer, "addr", "add", "10.201.0.2/24", "dev", "p0")
        drop_rule(ns, "iptables", "udp", 7100, "-i", "eth0")
    assert ifindex(a, "eth0") == ifindex(b, "eth0")  # the point of the test
    sent = {a: 5, b: 3}
    with drop_trace(backend="ebpf", filter="udp port 7100") as t:
        for ns, peer in ((a, pa), (b, pb)):
            send_udp(peer, socket.AF_INET, ("10.201.0.2", 0), ("10.201.0.1", 7100), sent[ns])
        wait_for(lambda: len(records(t, lambda p: p.matched)) >= 8, "8 records")
    r = t.result
    assert r.backend == "ebpf"
    for ns in (a, b):
        mine = [p for p in r.packets if p.matched and p.netns_inode == inode(ns)]
        assert len(mine) == sent[ns] == rule_packets(ns, "iptables", 7100, "udp")
        assert {(p.ifindex, p.device, p.reason) for p in mine} == {(ifindex(ns, "eth0"), "eth0", "NETFILTER_DROP")}
        tally = [x for x in r.tallies if x.netns_inode == inode(ns) and x.reason == "NETFILTER_DROP"]
        assert [(x.ifindex, x.count, x.netns) for x in tally] == [(ifindex(ns, "eth0"), sent[ns], ns)]


def test_flows_of_dropped_tcp_and_udp_ipv4_ipv6_match_the_rules(make_ns):
    from vnetdiag.collect.droptrace import drop_trace

    c, s = make_ns("c"), make_ns("s")
    veth(c, "c0", s, "s0")
    for ns, dev, last in ((c, "c0", 1), (s, "s0", 2)):
        sh("ip", "-n", ns, "addr", "add", f"10.202.0.{last}/24", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"fd00:202::{last}/64", "dev", dev, "nodad")
    for tool in ("iptables", "ip6tables"):
        drop_rule(s, tool, "tcp", 7201)
        drop_rule(s, tool, "udp", 7202)
    cases = [  # (family, tool, client, server, proto, sport, dport)
        (socket.AF_INET, "iptables", "10.202.0.1", "10.202.0.2", "udp", 40001, 7202),
        (socket.AF_INET6, "ip6tables", "fd00:202::1", "fd00:202::2", "udp", 40002, 7202),
        (socket.AF_INET, "iptables", "10.202.0.1", "10.202.0.2", "tcp", 40003, 7201),
        (socket.AF_INET6, "ip6tables", "fd00:202::1", "fd00:202::2", "tcp", 40004, 7201),
    ]
    with drop_trace(backend="ebpf", filter="port 7201 or port 7202") as t:
        send_udp(c, socket.AF_INET, ("10.202.0.1", 40001), ("10.202.0.2", 7202), 7)
        send_udp(c, socket.AF_INET6, ("fd00:202::1", 40002), ("fd00:202::2", 7202), 4)
        for family, tool, client, server, _proto, sport, _dport in cases[2:]:
            with netns.entered(f"/run/netns/{c}"):
                sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.bind((client, sport))
            try:
                sock.connect_ex((server, 7201))
                # the SYN and its first retransmission (1 s later) both hit the rule
                wait_for(lambda tool=tool: rule_packets(s, tool, 7201, "tcp") >= 2, "a SYN retransmission")
            finally:
                sock.close()
        def total() -> int:
            return sum(rule_packets(s, tool, port, proto) for tool in ("iptables", "ip6tables")
                       for proto, port in (("tcp", 7201), ("udp", 7202)))

        wait_for(lambda: len(records(t, lambda p: p.matched)) >= total(), "a record per rule hit")
    r = t.result
    assert r.loss.lost == 0
    for family, tool, client, server, proto, sport, dport in cases:
        version = 4 if family == socket.AF_INET else 6
        five = (socket.getprotobyname(proto), client, sport, server, dport)
        got = [p for p in r.packets if p.matched and p.outer.ip_version == version and p.outer.dport == dport]
        assert got, (proto, version)
        assert {p.outer.five_tuple for p in got} == {five}
        assert len(got) == rule_packets(s, tool, dport, proto)
        assert {(p.netns_inode, p.device, p.reason) for p in got} == {(inode(s), "s0", "NETFILTER_DROP")}
        if proto == "tcp":
            assert all(p.outer.tcp_flags & 0x02 for p in got)  # SYNs
            assert len({p.outer.tcp_seq for p in got}) == 1  # a retransmission repeats the sequence number


def test_vxlan_drop_on_the_underlay_carries_the_inner_flow(make_ns):
    from vnetdiag.collect.droptrace import drop_trace

    u1, u2 = make_ns("u1"), make_ns("u2")
    for ns in (u1, u2):  # no IPv6 neighbour discovery over the overlay: only the test's packets cross it
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
    veth(u1, "ul1", u2, "ul2")
    macs = {}
    for ns, dev, last, peer in ((u1, "ul1", 1, 2), (u2, "ul2", 2, 1)):
        sh("ip", "-n", ns, "addr", "add", f"10.203.0.{last}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", f"10.203.0.{last}",
           "remote", f"10.203.0.{peer}", "dstport", "4789", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"10.204.0.{last}/24", "dev", "vx0")
        sh("ip", "-n", ns, "link", "set", "vx0", "up")
        macs[ns] = json.loads(sh("ip", "-n", ns, "-j", "link", "show", "vx0"))[0]["address"]
    sh("ip", "-n", u1, "neigh", "replace", "10.204.0.2", "lladdr", macs[u2], "dev", "vx0", "nud", "permanent")
    drop_rule(u2, "iptables", "udp", 4789, "-i", "ul2")
    with drop_trace(backend="ebpf", filter="udp port 7301") as t:
        send_udp(u1, socket.AF_INET, ("10.204.0.1", 40010), ("10.204.0.2", 7301), 6)
        wait_for(lambda: len(records(t, lambda p: p.matched)) >= 6, "6 records")
    got = [p for p in t.result.packets if p.matched]
    assert len(got) == 6 == rule_packets(u2, "iptables", 4789, "udp")
    assert {p.inner.five_tuple for p in got} == {(17, "10.204.0.1", 40010, "10.204.0.2", 7301)}
    assert {(p.outer.proto, p.outer.src, p.outer.dst, p.outer.dport) for p in got} == \
        {(17, "10.203.0.1", "10.203.0.2", 4789)}
    assert {(p.netns_inode, p.device, p.reason) for p in got} == {(inode(u2), "ul2", "NETFILTER_DROP")}
    assert sum(x.count for x in t.result.tallies if x.netns_inode == inode(u2) and x.reason == "NETFILTER_DROP") == 6


_FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        s.sendto(b"x" * 200, ("10.203.0.2", 7600))
    except OSError:  # the qdisc is full: ENOBUFS
        pass
"""
_CLOSE_WITH_DATA = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    a, b = socket.socketpair()
    a.send(b"y")
    b.close()  # a unix socket closed with unread data: a drop (SOCKET_CLOSE) in task context
    a.close()
"""


def test_drops_the_kernel_skipped_the_tracer_for_are_reported(make_ns):
    """The kernel does not run a tracing program while another BPF program runs
    on that CPU. Here htb's timer releases packets in an interrupt, and their
    drop (a rule) runs in the softirq at its exit, on the CPU where the tracer
    is busy with a task-context drop (unix sockets closed with data). Those
    drops are neither counted nor streamed. The tracer reads the kernel's count
    of them (the program's recursion_misses), so a count short of the rule's is
    reported as such."""
    from vnetdiag.collect.droptrace import drop_trace

    a, b = make_ns("ha"), make_ns("hb")
    veth(a, "ha0", b, "hb0")
    sh("ip", "-n", a, "addr", "add", "10.203.0.1/24", "dev", "ha0")
    sh("ip", "-n", b, "addr", "add", "10.203.0.2/24", "dev", "hb0")
    sh("tc", "-n", a, "qdisc", "add", "dev", "ha0", "root", "handle", "1:", "htb", "default", "10")
    sh("tc", "-n", a, "class", "add", "dev", "ha0", "parent", "1:", "classid", "1:10", "htb", "rate", "20mbit",
       "quantum", "1500")
    drop_rule(b, "iptables", "udp", 7600)

    def backlog() -> int:
        return sum(q.get("qlen", 0) for q in json.loads(sh("tc", "-n", a, "-s", "-j", "qdisc", "show", "dev", "ha0")))

    with drop_trace(backend="ebpf", filter="udp port 7600") as t:
        # Both on CPU 0: the timer fires where the qdisc runs, the tracer runs where the sockets close.
        load = [subprocess.Popen(["ip", "netns", "exec", a, "taskset", "-c", "0", sys.executable, "-c", _FLOOD, "3"]),
                subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", _CLOSE_WITH_DATA, "3"])]
        for p in load:
            assert p.wait(timeout=30) == 0
        wait_for(lambda: backlog() == 0, "the qdisc to drain")
    # The tracer's final counts (printed after it detached) against the rule's.
    rule = rule_packets(b, "iptables", 7600, "udp")
    r = t.result
    traced = sum(x.count for x in r.tallies if x.netns_inode == inode(b) and x.reason == "NETFILTER_DROP")
    got = {"rule": rule, "traced": traced, "missed": r.loss.missed, "lost": r.loss.lost,
           "records": sum(1 for p in r.packets if p.matched)}
    print(json.dumps(got))
    # The kernel's count is a floor, not the whole: some skips go uncounted (a few
    # per cent of the counted ones here). What must hold is that a short count is
    # never silent: the tracer then says it missed drops, and is not "complete".
    assert r.loss.missed is not None
    assert traced <= rule, got
    assert traced == rule or (r.loss.missed > 0 and not r.loss.complete), got
    assert not r.loss.complete or traced == rule


def test_drop_timestamps_are_on_clock_monotonic():
    from vnetdiag.collect.droptrace import drop_trace

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    with drop_trace(backend="ebpf", filter="udp port 7401") as t:
        started = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", ("127.0.0.1", 7401))  # nothing listens: NO_SOCKET on lo
        done = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        wait_for(lambda: records(t, lambda p: p.matched), "the record")
    assert before <= t._src.bpf_started_ns <= started  # bpftrace's BEGIN nsecs, between our two readings
    [p] = [p for p in t.result.packets if p.matched]
    assert sent <= p.ts_ns <= done and p.reason == "NO_SOCKET" and p.device == "lo"


# -- the command: cleanup after SIGKILL, missing bpftrace


@pytest.fixture
def state_env(tmp_path):
    return {**os.environ, "VNETDIAG_STATE_DIR": str(tmp_path / "state"),
            # Not this run's lab prefix: cleanup in this empty state would sweep its lab as lost.
            "VNETDIAG_LAB_PREFIX": f"x{os.getpid() % 1000000}"}


def _bpftrace_pid(journals: Path) -> int | None:
    for j in journals.glob("bpftrace-*.jsonl"):
        for line in j.read_text().splitlines()[1:]:
            step = json.loads(line)
            if step.get("op") == "kill-process":
                return step["pid"]
    return None


def _held_prog_ids(pid: int) -> set[int]:
    """Ids of the BPF programs a process holds (fdinfo of its bpf-prog fds)."""
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").glob("*"):
        try:
            m = re.search(r"^prog_id:\s+(\d+)", info.read_text(), re.MULTILINE)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    return ids


def _loaded_prog_ids() -> set[int] | None:
    """Ids of every loaded BPF program (bpftool), None without bpftool."""
    if subprocess.run(["which", "bpftool"], check=False, capture_output=True).returncode != 0:
        return None
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=False, capture_output=True, text=True, timeout=30)
    return {prog["id"] for prog in json.loads(out.stdout or "[]")}


def test_sigkill_during_drops_then_cleanup_leaves_nothing(state_env, tmp_path):
    journals = tmp_path / "state" / "journals"
    p = subprocess.Popen([VNETDIAG, "drops", "--backend", "ebpf", "--duration", "60", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=state_env)
    try:
        pid = wait_for(lambda: _bpftrace_pid(journals), "the journaled bpftrace", timeout_s=30)
        helper = proc.ProcessId(pid=pid, start_ticks=proc.start_ticks(pid) or 0)
        progs = wait_for(lambda: _held_prog_ids(pid), "bpftrace's programs loaded")
        loaded = _loaded_prog_ids()
        assert loaded is None or progs <= loaded
    finally:
        p.kill()
        p.wait(timeout=10)
    out = subprocess.run([VNETDIAG, "cleanup"], check=False, capture_output=True, text=True, env=state_env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not proc.is_alive(helper)
    leftovers = [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and
                 f"vnetdiag-bpftrace-{p.pid}-".encode() in _cmdline(d)]
    assert leftovers == []
    assert not list(journals.glob("*.jsonl"))
    assert not list((tmp_path / "state" / "bpftrace").glob("*.bt"))
    assert not progs & (_loaded_prog_ids() or set())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_drops_prints_the_result_and_leaves_nothing(state_env, tmp_path, sig):
    journals = tmp_path / "state" / "journals"
    p = subprocess.Popen([VNETDIAG, "drops", "--backend", "ebpf", "--duration", "60", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=state_env)
    try:
        pid = wait_for(lambda: _bpftrace_pid(journals), "the journaled bpftrace", timeout_s=30)
        helper = proc.ProcessId(pid=pid, start_ticks=proc.start_ticks(pid) or 0)
        # The probes are live once vnetdiag says it is tracing (bpftrace's BEGIN
        # ran); a signal before that interrupts the start, which is an error.
        before = _stderr_until_tracing(p)
        assert "tracing kernel drops" in before, before
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        err = before + err
    finally:
        p.kill()
    doc = json.loads(out)
    assert doc["backend"] == "ebpf" and doc["schema"] == "vnetdiag.drops/1", err
    assert not proc.is_alive(helper)
    assert not list(journals.glob("*.jsonl"))


def _stderr_until_tracing(p: subprocess.Popen) -> str:
    """stderr up to vnetdiag's "tracing kernel drops ..." line (or its end)."""
    seen = []
    for line in p.stderr:
        seen.append(line)
        if line.startswith("tracing kernel drops"):
            break
    return "".join(seen)


def _cmdline(d: Path) -> bytes:
    try:
        return (d / "cmdline").read_bytes()
    except OSError:
        return b""


NO_BPFTRACE_PATH = "/usr/sbin:/sbin"  # ip, iptables, tc live here; bpftrace is in /usr/bin


def test_forced_ebpf_without_bpftrace_is_exit_3_with_a_hint(state_env):
    assert not any(Path(d, "bpftrace").exists() for d in NO_BPFTRACE_PATH.split(":"))
    out = subprocess.run([VNETDIAG, "drops", "--backend", "ebpf", "--duration", "1"], check=False, capture_output=True,
                         text=True, env={**state_env, "PATH": NO_BPFTRACE_PATH}, timeout=60)
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bpftrace" in lines[0] and "hint" in lines[0] and "Traceback" not in out.stderr


def test_auto_without_bpftrace_falls_back_to_tracefs_with_a_note(state_env):
    out = subprocess.run([VNETDIAG, "drops", "--duration", "0.5", "--json"], check=False, capture_output=True, text=True,
                         env={**state_env, "PATH": NO_BPFTRACE_PATH}, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["backend"] == "tracefs" and re.search(r"bpftrace is not installed.*used tracefs", doc["note"])


# -- macvtap rings (seeds 001, 004): was the queue really full?


@pytest.fixture(scope="module")
def rlab():
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "hb") + "r"
    lab_mod.down(prefix)
    the_lab = lab_mod.up(spec.default(prefix))
    try:
        yield the_lab
    finally:
        assert not lab_mod.down(prefix)


def _burst(lab, dst: str, count: int) -> None:
    code = ("import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for _ in range({count}): s.sendto(b'x'*500, ('{dst}', 7501))")
    lab.run("vm1", ["python3", "-c", code], check=True, timeout=20)


def _rx_dropped(ns: str, dev: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", dev))[0]["stats64"]["rx"]["dropped"]


def test_full_ring_at_a_stopped_macvtap_reader_shows_the_ring_full_and_none_when_it_reads(rlab):
    from vnetdiag.collect.droptrace import drop_trace

    lab, hv1 = rlab, rlab.netns("hv1")
    lab.clear_faults()
    lab.run("vm1", ["ping", "-c1", "-W2", lab.ip("vm2")], check=True)
    tap_ifindex = ifindex(hv1, "mvtap0")
    flt = f"udp and dst host {lab.ip('vm2')} and dst port 7501"
    lab.add_fault("slow-guest", at="hv1:mvtap0")  # backend stops reading; queue length 16
    before = _rx_dropped(hv1, "mvtap0")
    try:
        with drop_trace(backend="ebpf", filter=flt) as t:
            _burst(lab, lab.ip("vm2"), 100)
            wait_for(lambda: _rx_dropped(hv1, "mvtap0") - before > 50, "macvtap rx drops")
            n = _rx_dropped(hv1, "mvtap0") - before
            wait_for(lambda: len(records(t, lambda p: p.reason == "FULL_RING")) >= n, "a record per drop")
    finally:
        lab.clear_faults()
    full = [p for p in t.result.packets if p.reason == "FULL_RING"]
    dropped = _rx_dropped(hv1, "mvtap0") - before
    at_tap = lambda x: x.netns_inode == inode(hv1) and x.ifindex == tap_ifindex and x.reason == "FULL_RING"  # noqa: E731
    assert len(full) == dropped - kernel_gap(t.result, dropped, at_tap)  # ci30: 89 traced of 90
    assert {(p.netns_inode, p.ifindex, p.device, p.location.split("+")[0]) for p in full} == \
        {(inode(hv1), tap_ifindex, "mvtap0", "tap_handle_frame")}
    assert all(p.ring is not None and p.ring.slot_busy for p in full)
    assert {(p.ring.occupied_entries, p.ring.size_entries) for p in full} == {(16, 16)}

    before = _rx_dropped(hv1, "mvtap0")
    with drop_trace(backend="ebpf", filter=flt) as t:  # the backend reads again
        _burst(lab, lab.ip("vm2"), 100)
    assert _rx_dropped(hv1, "mvtap0") == before
    assert not [x for x in t.result.tallies if x.netns_inode == inode(hv1) and x.reason == "FULL_RING"]


_TUNSETIFF, _IFF_TAP, _IFF_NO_PI = 0x400454CA, 0x0002, 0x1000


def _tap_held_by_us(ns: str, name: str) -> int:
    """A tap device in ``ns`` whose one queue is this process's file descriptor:
    it is the reader (as QEMU is), and it reads only when the test says so."""
    with netns.entered(f"/run/netns/{ns}"):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    return fd


def _drain_udp_to(fd: int, dport: int) -> int:
    """Reads every frame left in the tap's ring; how many were IPv4 UDP to ``dport``."""
    n = 0
    while True:
        try:
            f = os.read(fd, 65536)
        except BlockingIOError:
            return n
        ihl = (f[14] & 0xF) * 4
        n += f[12:14] == b"\x08\x00" and f[23] == 17 and int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big") == dport


def _tx_dropped(ns: str, dev: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", dev))[0]["stats64"]["tx"]["dropped"]


def test_full_ring_at_a_tap_whose_reader_stops_shows_the_ring_full_and_none_when_it_reads(make_ns):
    """tun_net_xmit drops with FULL_RING when its queue's tx ring is full: each
    such drop is placed on the tap with the ring read at that instant, and the
    count equals the tap's tx_dropped."""
    from vnetdiag.collect.droptrace import drop_trace

    ns = make_ns("tun")
    fd = _tap_held_by_us(ns, "tap0")
    try:
        sh("ip", "-n", ns, "link", "set", "tap0", "txqueuelen", "32", "up")
        sh("ip", "-n", ns, "addr", "add", "10.208.0.1/24", "dev", "tap0")
        sh("ip", "-n", ns, "neigh", "add", "10.208.0.2", "lladdr", "02:00:00:00:02:02", "dev", "tap0",
           "nud", "permanent")
        flt = "udp and dst host 10.208.0.2 and dst port 7602"
        before = _tx_dropped(ns, "tap0")
        with drop_trace(backend="ebpf", filter=flt) as t:
            send_udp(ns, socket.AF_INET, ("10.208.0.1", 0), ("10.208.0.2", 7602), 100)
            wait_for(lambda: _tx_dropped(ns, "tap0") - before > 50, "tap tx drops")
            # The tap also sends IPv6 solicitations of its own, whenever it likes:
            # every drop is counted at the tap (the kernel's counts, printed each
            # second, meet tx_dropped), and the probe's flow exactly: 100 = in the
            # ring + dropped.
            wait_for(lambda: _tx_dropped(ns, "tap0") - before == sum(
                x.count for x in t.snapshot().tallies if x.reason == "FULL_RING" and x.netns_inode == inode(ns)),
                "the kernel's FULL_RING count at the tap equal to its tx_dropped")
            in_ring = _drain_udp_to(fd, 7602)
            wait_for(lambda: len(records(t, lambda p: p.reason == "FULL_RING" and p.matched)) >= 100 - in_ring,
                     "a record per drop of the flow")
        full = [p for p in t.result.packets if p.reason == "FULL_RING" and p.matched]
        assert len(full) == 100 - in_ring and in_ring <= 32
        assert {(p.netns_inode, p.ifindex, p.device, p.location.split("+")[0]) for p in full} == \
            {(inode(ns), ifindex(ns, "tap0"), "tap0", "tun_net_xmit")}
        assert all(p.ring is not None and p.ring.slot_busy and p.ring.queue_index == 0 for p in full)
        assert {(p.ring.occupied_entries, p.ring.size_entries) for p in full} == {(32, 32)}

        stop = threading.Event()

        def read() -> None:  # the reader is back: it drains the ring as fast as packets come
            while not stop.is_set():
                if select.select([fd], [], [], 0.05)[0]:
                    try:
                        os.read(fd, 65536)
                    except BlockingIOError:
                        pass

        reader = threading.Thread(target=read)
        reader.start()
        try:
            wait_for(lambda: not select.select([fd], [], [], 0)[0], "the ring drained")
            before = _tx_dropped(ns, "tap0")
            with drop_trace(backend="ebpf", filter=flt) as t:
                for _ in range(10):
                    send_udp(ns, socket.AF_INET, ("10.208.0.1", 0), ("10.208.0.2", 7602), 10)
                    wait_for(lambda: not select.select([fd], [], [], 0)[0], "the reader took them")
        finally:
            stop.set()
            reader.join()
        assert _tx_dropped(ns, "tap0") == before
        assert not [x for x in t.result.tallies if x.netns_inode == inode(ns) and x.reason == "FULL_RING"]
    finally:
        os.close(fd)


def test_missing_btf_or_tracepoint_is_a_feature_error_with_a_hint(tmp_path):
    from vnetdiag.errors import MissingFeatureError
    from vnetdiag.system import bpftrace

    with pytest.raises(MissingFeatureError) as e:
        bpftrace.check_usable(btf_path=tmp_path / "no-vmlinux")
    assert e.value.exit_status == 3 and "BTF" in e.value.message and "tracefs" in e.value.hint
    with pytest.raises(MissingFeatureError) as e:
        bpftrace.check_usable(("skb", "no_such_tracepoint"))
    assert "no_such_tracepoint" in e.value.message and e.value.hint


def test_trace_record_keeps_the_ebpf_drops_and_report_reads_old_and_new_files(make_ns, tmp_path):
    """`trace record` writes the eBPF tracer's drops of the same window into the
    file (version 2); `trace report` shows them, and still reads version 1."""
    a, b = make_ns("ra"), make_ns("rb")
    veth(a, "eth0", b, "p0")
    sh("ip", "-n", a, "addr", "add", "10.205.0.1/24", "dev", "eth0")
    sh("ip", "-n", b, "addr", "add", "10.205.0.2/24", "dev", "p0")
    drop_rule(a, "iptables", "udp", 7501, "-i", "eth0")
    out = tmp_path / "rec.gz"
    p = subprocess.Popen([VNETDIAG, "trace", "record", "-o", str(out), "--events", "drops", "--duration", "60",
                          "--filter", "udp port 7501", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "recording drops events" in p.stderr.readline()
        send_udp(b, socket.AF_INET, ("10.205.0.2", 0), ("10.205.0.1", 7501), 7)
        wait_for(lambda: rule_packets(a, "iptables", 7501, "udp") == 7, "the rule to count 7")
        p.send_signal(signal.SIGINT)
        stdout, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert json.loads(stdout)["drop_backend"] == "ebpf", err
    rep = subprocess.run([VNETDIAG, "trace", "report", str(out), "--json"], capture_output=True, text=True,
                         timeout=60)
    assert rep.returncode == 0, rep.stderr
    doc = json.loads(rep.stdout)
    assert doc["ebpf_drops"]["backend"] == "ebpf"
    mine = [f for f in doc["ebpf_drops"]["flows"] if f["outer"] and f["outer"]["dport"] == 7501]
    assert sum(f["count"] for f in mine) == rule_packets(a, "iptables", 7501, "udp") == 7
    assert {f["netns_inode"] for f in mine} == {inode(a)} and {f["reason"] for f in mine} == {"NETFILTER_DROP"}
    v1 = Path(__file__).parents[1] / "golden" / "tracing" / "recording.vtr"  # a version 1 recording
    rep1 = subprocess.run([VNETDIAG, "trace", "report", str(v1), "--json"], capture_output=True, text=True,
                          timeout=60)
    assert rep1.returncode == 0, rep1.stderr
    assert json.loads(rep1.stdout)["ebpf_drops"] is None and "vnetdiag.trace/1" in rep1.stdout
