"""Record the eBPF backend's output with packet bytes (drops --pcapng) on a namespace of our own.

Run as root: .venv/bin/python tests/golden/pcapng/record.py
Writes, next to this file: bpftrace.jsonl (bpftrace's raw stdout, records for
loopback addresses only), counters.json (the iptables rules' packet counters),
kfree_skb.format (reason names), kallsyms.txt (the symbols around the recorded
locations), meta.json (the namespace inode, the wall-clock offset taken at start). Traffic: UDP to port 9 dropped in
INPUT on lo (a MAC header), UDP to port 10 dropped in OUTPUT (no MAC header yet),
TCP SYNs over IPv6 to port 9 dropped in INPUT.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from vnetdiag.collect.ebpf_drops import EbpfDropSource
from vnetdiag.system.netns import entered

HERE = Path(__file__).parent
NS = "hk-pcapng-rec"


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def main():
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        for tool, chain, proto, port in (("iptables", "INPUT", "udp", 9), ("iptables", "OUTPUT", "udp", 10),
                                         ("ip6tables", "INPUT", "tcp", 9)):
            sh("ip", "netns", "exec", NS, tool, "-A", chain, "-p", proto, "--dport", str(port), "-j", "DROP")
        src = EbpfDropSource(filter="host 127.0.0.1 or host ::1", sample=0, head_bytes=128,
                             raw_log=HERE / "bpftrace.jsonl")
        offset_ns = time.time_ns() - time.monotonic_ns()
        src.start()
        with entered(f"/run/netns/{NS}"):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(3):
                u.sendto(bytes(range(256)) * 2, ("127.0.0.1", 9))
                try:
                    u.sendto(b"\\x" + bytes([i]) * 40, ("127.0.0.1", 10))
                except PermissionError:
                    pass  # what a sender sees when OUTPUT drops its packet
            t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            t.setblocking(False)
            t.connect_ex(("::1", 9))
            time.sleep(0.3)
            t.close()
        time.sleep(0.5)
        result = src.stop()
        inode = os.stat(f"/run/netns/{NS}").st_ino
        (HERE / "meta.json").write_text(json.dumps({"netns_inode": inode, "netns": NS,
                                                    "wall_offset_ns": offset_ns}) + "\n")
        (HERE / "kfree_skb.format").write_text(Path("/sys/kernel/tracing/events/skb/kfree_skb/format").read_text())
        wanted = {int(ln.split()[7]) for ln in (json.loads(x)["data"] for x in
                  (HERE / "bpftrace.jsonl").read_text().splitlines() if '"D ' in x)}
        syms = sorted((int(ln.split()[0], 16), ln) for ln in Path("/proc/kallsyms").read_text().splitlines()
                      if ln.split()[1] in "tT")
        keep = set()
        for w in wanted:
            for i, (a, ln) in enumerate(syms):
                if a > w:
                    keep |= {syms[i - 1][1], ln}
                    break
        (HERE / "kallsyms.txt").write_text("\n".join(sorted(keep)) + "\n")
        assert all(p.netns_inode == inode for p in result.packets), "a record from another namespace"
        counts = {}
        for tool in ("iptables", "ip6tables"):
            out = sh("ip", "netns", "exec", NS, tool, "-nvxL")
            counts[tool] = [line.split()[0] for line in out.splitlines() if "DROP" in line and "dpt:" in line]
        (HERE / "counters.json").write_text(json.dumps(counts) + "\n")
    finally:
        sh("ip", "netns", "del", NS)


if __name__ == "__main__":
    main()
