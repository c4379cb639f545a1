"""Record the golden bpftrace output of the eBPF drop backend (run as root on the target kernel):

    sudo .venv/bin/python tests/golden/ebpf/record.py

Builds two namespaces (hbrec-a, hbrec-b) joined by a veth and a vxlan over it, closes a unix
socket with unread data (a drop with no network header),
drops with iptables: UDP 7202 and TCP 7201 over IPv4 and IPv6, and VXLAN
(inner UDP 7301) on the underlay; plus UDP to a closed port on loopback.
Writes, next to this file: bpftrace.jsonl (bpftrace's raw stdout), script.bt
(the generated program), kfree_skb.format (reason names), kallsyms.txt (the
symbols the recorded locations fall in), expected.json (what the rules counted).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from vnetdiag.collect.ebpf_drops import EbpfDropSource
from vnetdiag.system import netns

HERE = Path(__file__).parent
A, B = "hbrec-a", "hbrec-b"


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def build() -> None:
    for ns in (A, B):
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", A, "link", "add", "ua", "type", "veth", "peer", "name", "ub")
    sh("ip", "-n", A, "link", "set", "ub", "netns", B)
    for ns, dev, last, peer in ((A, "ua", 1, 2), (B, "ub", 2, 1)):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", f"10.203.0.{last}/24", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"fd00:203::{last}/64", "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", f"10.203.0.{last}",
           "remote", f"10.203.0.{peer}", "dstport", "4789", "dev", dev)
        # no IPv6 on the overlay: its neighbour discovery would keep the underlay rule counting after the trace
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1")
        sh("ip", "-n", ns, "addr", "add", f"10.204.0.{last}/24", "dev", "vx0")
        sh("ip", "-n", ns, "link", "set", "vx0", "up")
    mac = json.loads(sh("ip", "-n", B, "-j", "link", "show", "vx0"))[0]["address"]
    sh("ip", "-n", A, "neigh", "replace", "10.204.0.2", "lladdr", mac, "dev", "vx0", "nud", "permanent")
    for tool in ("iptables", "ip6tables"):
        for proto, port in (("tcp", 7201), ("udp", 7202)):
            sh("ip", "netns", "exec", B, tool, "-A", "INPUT", "-p", proto, "--dport", str(port), "-j", "DROP")
    sh("ip", "netns", "exec", B, "iptables", "-A", "INPUT", "-i", "ub", "-p", "udp", "--dport", "4789", "-j", "DROP")


def traffic() -> None:
    # A drop without a network header: unread data on a unix socket that closes (SOCKET_CLOSE).
    a, b = socket.socketpair()
    a.send(b"golden")
    b.close()
    a.close()
    def sock(family, kind):
        with netns.entered(f"/run/netns/{A}"):
            return socket.socket(family, kind)

    for family, src, dst, n in ((socket.AF_INET, "10.203.0.1", "10.203.0.2", 3),
                                (socket.AF_INET6, "fd00:203::1", "fd00:203::2", 2)):
        with sock(family, socket.SOCK_DGRAM) as s:
            s.bind((src, 40001))
            for _ in range(n):
                s.sendto(b"golden", (dst, 7202))
        t = sock(family, socket.SOCK_STREAM)
        t.setblocking(False)
        t.bind((src, 40003))
        t.connect_ex((dst, 7201))
        time.sleep(0.2)
        t.close()
    with sock(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("10.204.0.1", 40010))
        for _ in range(2):
            s.sendto(b"golden", ("10.204.0.2", 7301))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.sendto(b"golden", ("::1", 7401))


def main() -> None:
    build()
    try:
        src = EbpfDropSource(filter="port 7201 or port 7202 or port 7301 or port 7401", sample=50,
                             vxlan_ports=(4789,), raw_log=HERE / "bpftrace.jsonl")
        src.start()
        try:
            traffic()
            time.sleep(1.5)
        finally:
            result = src.stop()
        (HERE / "script.bt").write_text(src.script)
        (HERE / "kfree_skb.format").write_text(Path("/sys/kernel/tracing/events/skb/kfree_skb/format").read_text())
        wanted = {int(line.split()[6]) for line in (HERE / "bpftrace.jsonl").read_text().splitlines()
                  if '"D ' in line for line in [json.loads(line)["data"]]}
        wanted |= {int(k.split(",")[3], 16) for line in (HERE / "bpftrace.jsonl").read_text().splitlines()
                   if '"@drops"' in line for k in json.loads(line)["data"]["@drops"]}
        lines = [ln for ln in Path("/proc/kallsyms").read_text().splitlines() if ln.split()[1] in "tT"]
        addrs = sorted((int(ln.split()[0], 16), ln) for ln in lines)
        keep = set()
        for w in wanted:
            for i, (a, ln) in enumerate(addrs):
                if a > w:
                    keep |= {addrs[i - 1][1], ln}
                    break
        (HERE / "kallsyms.txt").write_text("\n".join(sorted(keep)) + "\n")
        counters = {tool: sh("ip", "netns", "exec", B, tool, "-L", "INPUT", "-v", "-x", "-n")
                    for tool in ("iptables", "ip6tables")}
        (HERE / "expected.json").write_text(json.dumps({
            "rules": counters, "records": len(result.packets), "lost": result.loss.lost}, indent=1) + "\n")
    finally:
        for ns in (A, B):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


if __name__ == "__main__":
    main()
