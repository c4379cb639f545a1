"""Record real `nft -a monitor trace` output for tests/golden/test_nftrace.py.

    sudo .venv/bin/python tests/golden/nftrace/record.py

A router namespace r between a (10.78.0.1) and b (10.78.1.2), with vnetdiag's
marking table for a UDP probe to b:7777 and a native nft forward chain that
drops 5 of the probe's requests (dport) and 3 of its replies (sport), one rule
each, plus an iptables (nf_tables) INPUT rule that drops 2 datagrams to r.
Writes monitor.txt (the monitor's stdout) and ruleset.json (nft -j list
ruleset afterwards: the rules' own counters are the truth).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from vnetdiag.collect import nftrace
from vnetdiag.model.bundle import ProbeFlows
from vnetdiag.system import netns

HERE = Path(__file__).parent
N = {"a": "nfr-a", "r": "nfr-r", "b": "nfr-b"}


def sh(*argv: str, input: str | None = None) -> None:
    subprocess.run(argv, check=True, input=input, text=True)


def udp(ns: str, src: tuple, dst: tuple, n: int) -> None:
    with netns.entered(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind(src)
        for _ in range(n):
            s.sendto(b"vnetdiag", dst)


def main() -> None:
    for n in N.values():
        subprocess.run(["ip", "netns", "delete", n], capture_output=True)
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    try:
        sh("ip", "-n", N["a"], "link", "add", "e0", "type", "veth", "peer", "name", "ra", "netns", N["r"])
        sh("ip", "-n", N["b"], "link", "add", "e0", "type", "veth", "peer", "name", "rb", "netns", N["r"])
        for ns, dev, addr in ((N["a"], "e0", "10.78.0.1/24"), (N["r"], "ra", "10.78.0.254/24"),
                              (N["r"], "rb", "10.78.1.254/24"), (N["b"], "e0", "10.78.1.2/24")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", N["a"], "route", "add", "default", "via", "10.78.0.254")
        sh("ip", "-n", N["b"], "route", "add", "default", "via", "10.78.1.254")
        sh("ip", "netns", "exec", N["r"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", N["r"], "nft", "-f", "-", input=(
            "table inet fw {\n chain relay { type filter hook forward priority 0; policy accept;\n"
            "  udp dport 7777 counter drop\n  udp sport 7777 counter drop\n }\n}\n"))
        sh("ip", "netns", "exec", N["r"], "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7777", "-j", "DROP")
        flows = ProbeFlows(proto=17, client="10.78.0.1", server="10.78.1.2", server_port=7777)
        mon = subprocess.Popen(["ip", "netns", "exec", N["r"], "nft", "-a", "monitor", "trace"],
                               stdout=subprocess.PIPE, text=True)
        sh("ip", "netns", "exec", N["r"], "nft", "-f", "-", input=nftrace.ruleset(flows, "vnetdiag_trace_rec"))
        time.sleep(0.5)  # a recording script, not a test: the monitor subscribes
        udp(N["a"], ("10.78.0.1", 40001), ("10.78.1.2", 7777), 5)
        udp(N["b"], ("10.78.1.2", 7777), ("10.78.0.1", 40001), 3)
        udp(N["a"], ("10.78.0.1", 40002), ("10.78.0.254", 7777), 2)
        time.sleep(0.5)
        mon.terminate()
        (HERE / "monitor.txt").write_text(mon.communicate()[0])
        out = subprocess.run(["ip", "netns", "exec", N["r"], "nft", "-j", "list", "ruleset"], check=True,
                             capture_output=True, text=True).stdout
        (HERE / "ruleset.json").write_text(out)
    finally:
        for n in N.values():
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)


if __name__ == "__main__":
    main()
