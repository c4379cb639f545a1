#!/usr/bin/env python3
"""Measure what each lab fault does to the kernel's counters and drop reasons.

Builds a lab (prefix "vnm"), and for each fault: injects it, sends traffic, and
prints the counters that moved (ip -s link, tc -s qdisc, conntrack -S, iptables
rule counters) and the skb:kfree_skb drop reasons seen by vnetdiag's drop
tracer (collect/tracewindow.py). The output is what docs/lab.md records.
Run as root: sudo .venv/bin/python scripts/measure_faults.py
"""
import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from vnetdiag import lab as lab_mod
from vnetdiag.lab import spec

def sh(*argv, check=False):
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def links(lab):
    out = {}
    for node in [n.name for n in lab.spec.nodes]:
        for l in json.loads(sh("ip", "-n", lab.netns(node), "-s", "-j", "link")):
            for d in ("rx", "tx"):
                for k, v in l["stats64"][d].items():
                    out[(node, l["ifname"], f"{d}_{k}")] = v
        for q in json.loads(sh("tc", "-n", lab.netns(node), "-s", "-j", "qdisc") or "[]"):
            for k in ("packets", "drops", "overlimits", "backlog", "qlen"):
                if k in q:
                    out[(node, q["dev"], f"qdisc_{q['kind']}_{k}")] = q[k]
    ct = sh("ip", "netns", "exec", lab.netns("hv1"), "conntrack", "-S")
    for line in ct.splitlines():
        for k, v in re.findall(r"(\w+)=(\d+)", line):
            key = ("hv1", "conntrack", k)
            out[key] = out.get(key, 0) + int(v)
    return out


def trace(fn):
    """Run ``fn`` while the drop tracer watches; return its result and the drops
    as {(reason, location): count}."""
    from vnetdiag.collect.tracewindow import trace_window

    with trace_window(events="drops") as window:
        result = fn()
        time.sleep(0.3)
    reasons = collections.Counter()
    for d in window.result.drops:
        reasons[(d.reason, d.location)] += d.count
    return result, reasons


def diff(a, b):
    return {k: b[k] - a.get(k, 0) for k in b if isinstance(b[k], int) and b[k] != a.get(k, 0)}


def traffic(lab, kind):
    if kind == "mtu-mismatch":
        return lab.run("vm1", ["ping", "-c", "5", "-i", "0.05", "-W", "1", "-s", "1472", "-M", "do", lab.ip("vm3")], check=False)
    if kind == "slow-guest":
        return lab.run("vm1", ["ping", "-c", "50", "-i", "0.01", "-W", "1", "-q", lab.ip("vm2")], check=False)
    if kind == "queue-overflow":
        return lab.run("vm1", ["ping", "-c", "200", "-l", "30", "-i", "0.005", "-s", "1400", "-q", "-W", "1", lab.ip("vm3")], check=False)
    if kind == "conntrack-full":
        return lab.run("vm1", ["python3", "-c", "import socket;s=socket.socket();s.settimeout(3.5);s.connect(('%s',9))" % lab.ip("vm3")], check=False)
    return lab.run("vm1", ["ping", "-c", "100", "-i", "0.01", "-W", "1", "-q", lab.ip("vm3")], check=False)


CASES = [
    ("loss", "hv1:vm1-p", {"percent": 10}),
    ("loss", "vm3:eth0", {"percent": 10, "direction": "in"}),
    ("queue-overflow", "hv1:vx0", {}),
    ("tx-stall", "hv2:vm3-p", {}),
    ("slow-guest", "hv1:mvtap0", {}),
    ("conntrack-full", "hv1", {}),
    ("mtu-mismatch", "hv1:vx0", {}),
]

if __name__ == "__main__":
    lab_mod.down("vnm")
    lab = lab_mod.up(spec.default("vnm"))
    try:
        # warm up ARP and FDBs
        for g in lab.guests:
            for h in lab.guests:
                if g != h:
                    lab.run(g, ["ping", "-c1", "-W1", lab.ip(h)], check=False)
        for kind, at, opts in CASES:
            f = lab.add_fault(kind, at, **opts)
            before = links(lab)
            r, reasons = trace(lambda: traffic(lab, kind))
            after = links(lab)
            print(f"=== {kind} at {at} {opts}")
            print("traffic:", (r.stdout.strip().splitlines() or [""])[-2:], r.returncode)
            for k, v in sorted(diff(before, after).items()):
                if any(s in k[2] for s in ("drop", "err", "backlog", "qlen", "insert", "overlimit", "fail")) or k[2] == "tx_packets" and v == 0:
                    print("  ", k, v)
            for (reason, loc), n in reasons.most_common(6):
                print("   kfree_skb", reason, loc, n)
            if kind == "loss":
                ns = lab.netns(at.split(":")[0])
                print("  ", sh("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n").splitlines()[-1])
            lab.clear_fault(f.id)
    finally:
        print("down:", lab_mod.down("vnm"))
