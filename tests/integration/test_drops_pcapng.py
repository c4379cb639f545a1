"""`vnetdiag drops --pcapng` on a namespace pair: every packet an iptables rule
dropped is in the file, read back by tshark with its reason and namespace.

The namespaces (hk<pid>a, hk<pid>b) are this test's own. B drops TCP to
port 7777 in INPUT (packets with an Ethernet header, on B's veth); A drops
UDP to port 7778 in OUTPUT (no MAC header yet: written as raw IP). The rules'
packet counters are the reference.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vnetdiag.system import netns
from vnetdiag.system.netns import entered

pytestmark = pytest.mark.root
TAG = f"hk{os.getpid() % 10000:04d}"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
A_IP, B_IP = "10.231.0.1", "10.231.0.2"
TCP_PORT, UDP_PORT = 7777, 7778


def sh(*argv: str) -> str:
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"{' '.join(argv)}: {out.stderr}"
    return out.stdout


def wait_for(check, what: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rule_packets(ns: str, chain: str, proto: str, dport: int) -> int:
    text = sh("ip", "netns", "exec", ns, "iptables", "-L", chain, "-v", "-x", "-n")
    for line in text.splitlines():
        if f"dpt:{dport}" in line and "DROP" in line and proto in line.split():
            return int(line.split()[0])
    raise AssertionError(f"no DROP rule for {proto} {dport} in {ns} {chain}")


@pytest.fixture
def pair():
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    from vnetdiag.collect.droptrace import ebpf_unusable

    why = ebpf_unusable()
    if why:
        pytest.skip(why)
    a, b = f"{TAG}a", f"{TAG}b"
    for ns in (a, b):
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        sh("ip", "-n", a, "link", "set", "vb", "netns", b)
        for ns, dev, ip in ((a, "va", A_IP), (b, "vb", B_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", b, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(TCP_PORT), "-j", "DROP")
        sh("ip", "netns", "exec", a, "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", str(UDP_PORT), "-j", "DROP")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


def _wait_started(p: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until `drops` says it is tracing (it says so once bpftrace's probes are live)."""
    deadline, seen = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline and p.poll() is None:
        ready, _, _ = select.select([p.stderr], [], [], 0.2)
        if ready:
            line = p.stderr.readline()
            seen += line
            if line.startswith("tracing kernel drops"):
                return
    raise AssertionError(f"vnetdiag drops did not start: {seen}")


def test_pcapng_holds_every_dropped_packet_with_reason_and_namespace(pair, tmp_path):
    a, b = pair
    out_file = tmp_path / "drops.pcapng"
    p = subprocess.Popen([VNETDIAG, "drops", "--backend", "ebpf", "--pcapng", str(out_file), "--duration", "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_started(p)
        with entered(f"/run/netns/{a}"):
            socks = []
            for _ in range(12):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((B_IP, TCP_PORT))
                socks.append(s)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(5):
                try:
                    u.sendto(bytes([i]) * 100, (B_IP, UDP_PORT))
                except PermissionError:
                    pass  # the sender learns of an OUTPUT drop
        wait_for(lambda: rule_packets(b, "INPUT", "tcp", TCP_PORT) >= 12, "the 12 SYNs dropped")
        for s in socks:
            s.close()  # no retransmits after this: the counters are final
        u.close()
        tcp_drops = rule_packets(b, "INPUT", "tcp", TCP_PORT)
        udp_drops = rule_packets(a, "OUTPUT", "udp", UDP_PORT)
        _, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    assert "wrote" in stderr and str(out_file) in stderr
    assert udp_drops == 5 and tcp_drops >= 12

    fields = subprocess.run(["tshark", "-r", str(out_file), "-T", "fields", "-E", "separator=|",
                             "-e", "frame.comment", "-e", "tcp.dstport", "-e", "udp.dstport",
                             "-e", "frame.interface_name", "-e", "ip.dst"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split("|") for line in fields.splitlines()]
    b_label = f"netns={b} (netns:{netns.inode_of(f'/run/netns/{b}')})"
    a_label = f"netns={a} (netns:{netns.inode_of(f'/run/netns/{a}')})"
    tcp = [r for r in rows if b_label in r[0] and r[1] == str(TCP_PORT)]
    udp = [r for r in rows if a_label in r[0] and r[2] == str(UDP_PORT)]
    assert len(tcp) == tcp_drops
    assert len(udp) == udp_drops
    for comment, _, _, dev, dst in tcp + udp:
        assert "reason=NETFILTER_DROP" in comment and "location=" in comment
        assert dst == B_IP
    assert {r[3] for r in tcp} == {"vb"}  # INPUT: B's veth, Ethernet frames decoded by tshark
    assert {r[3] for r in udp} == {"no device"}  # OUTPUT: before the route chose a device
