"""Record the counter snapshots the watch detectors are tested on (needs root).

    sudo VNETDIAG_LAB_PREFIX=wch VNETDIAG_STATE_DIR=/run/vnetdiag-wch \
        .venv/bin/python tests/golden/watch/record.py [SCENARIO ...]

Builds the default lab (prefix wch; guest-tx-stall builds the VM lab of
tests/integration/vm_lab.toml instead), and for each scenario takes snapshots of
the lab's namespaces every 0.5 s with the same Collector `vnetdiag watch`
uses, while pings run and a fault is injected and cleared. Writes
tests/golden/watch/<scenario>.jsonl.gz (vnetdiag.snapshots/1) with a note
saying at which snapshot indexes the fault was added and cleared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from vnetdiag import lab as lab_mod
from vnetdiag.collect import Collector
from vnetdiag.lab import spec
from vnetdiag.watch import recording

HERE = Path(__file__).parent
INTERVAL_S = 0.5


def _pinger(lab, src, dst, *args):
    return subprocess.Popen(["ip", "netns", "exec", lab.netns(src), "ping", "-q", *args, lab.ip(dst)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


UDP_LOAD = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nb=bytes(1400)\n"
            "pps=int(sys.argv[2]);end=time.monotonic()+float(sys.argv[3]);t=time.monotonic()\n"
            "while t<end:\n s.sendto(b,(sys.argv[1],9))\n t+=1/pps\n d=t-time.monotonic()\n"
            " time.sleep(d) if d>0 else None\n")


def udp_load(lab, src, dst, pps=1000, duration_s=3.0):
    """UDP datagrams of 1400 bytes from src to dst's discard port at ``pps`` for ``duration_s``."""
    return subprocess.Popen(["ip", "netns", "exec", lab.netns(src), "python3", "-c", UDP_LOAD, lab.ip(dst),
                             str(pps), str(duration_s)])


def _take(col, n, out):
    for _ in range(n):
        out.append(col.snapshot())
        time.sleep(INTERVAL_S)


UDP_FLOWS = ("import socket,sys,time\nend=time.monotonic()+float(sys.argv[2])\n"
             "socks=[socket.socket(socket.AF_INET,socket.SOCK_DGRAM) for _ in range(16)]\n"
             "while time.monotonic()<end:\n for i,s in enumerate(socks):\n  s.sendto(b'x'*200,(sys.argv[1],9000+i))\n"
             " time.sleep(0.2)\n")


def mq_stall(prefix, col):
    """A two-queue veth pair with an mq root: queue 0 gets a stalled tbf, queue 1
    a pfifo; 16 UDP flows spread over both queues."""
    a, b = f"{prefix}-mqa", f"{prefix}-mqb"
    sh = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    snaps, marks = [], {}
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "q0", "numtxqueues", "2", "numrxqueues", "2", "type", "veth", "peer",
           "name", "q1", "netns", b, "numtxqueues", "2", "numrxqueues", "2")
        sh("ip", "-n", a, "addr", "add", "10.99.0.1/24", "dev", "q0")
        sh("ip", "-n", b, "addr", "add", "10.99.0.2/24", "dev", "q1")
        sh("ip", "-n", a, "link", "set", "q0", "up")
        sh("ip", "-n", b, "link", "set", "q1", "up")
        sh("tc", "-n", a, "qdisc", "add", "dev", "q0", "root", "handle", "1:", "mq")
        load = subprocess.Popen(["ip", "netns", "exec", a, "python3", "-c", UDP_FLOWS, "10.99.0.2", "12"])
        _take(col, 3, snaps)
        marks["fault_added"] = len(snaps)
        sh("tc", "-n", a, "qdisc", "replace", "dev", "q0", "parent", "1:1", "tbf", "rate", "8bit", "burst", "1600",
           "limit", "131072")
        _take(col, 10, snaps)
        marks["fault_cleared"] = len(snaps)
        sh("tc", "-n", a, "qdisc", "replace", "dev", "q0", "parent", "1:1", "pfifo")
        _take(col, 4, snaps)
        load.kill()
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)
    note = " ".join(f"{k}={v}" for k, v in marks.items())
    recording.dump(HERE / "mq-stall.jsonl.gz", snaps, note=f"mq-stall: interval {INTERVAL_S} s {note}")
    print(f"mq-stall: {len(snaps)} snapshots, {note}")


def scenario(lab, col, name):
    snaps = []
    marks = {}
    bg = _pinger(lab, "vm1", "vm3", "-i", "0.2")
    try:
        if name == "tx-stall":
            _take(col, 4, snaps)
            marks["fault_added"] = len(snaps)
            f = lab.add_fault("tx-stall", at="hv2:vm3-p")
            load = _pinger(lab, "vm1", "vm3", "-i", "0.05")
            _take(col, 14, snaps)
            marks["fault_cleared"] = len(snaps)
            lab.clear_fault(f.id)
            _take(col, 5, snaps)
            load.kill()
        elif name == "queue-overflow":
            _take(col, 8, snaps)
            marks["fault_added"] = len(snaps)
            f = lab.add_fault("queue-overflow", at="hv1:vx0")
            load = udp_load(lab, "vm1", "vm3", 1000, 30.0)
            _take(col, 10, snaps)
            load.kill()
            marks["fault_cleared"] = len(snaps)
            lab.clear_fault(f.id)
            _take(col, 8, snaps)
        elif name == "conntrack-full":
            _take(col, 3, snaps)
            marks["fault_added"] = len(snaps)
            f = lab.add_fault("conntrack-full", at="hv1", max=64)
            syn = subprocess.Popen(["ip", "netns", "exec", lab.netns("vm1"), "python3", "-c",
                                    "import socket,time\nfor p in range(7100,7130):\n"
                                    " s=socket.socket();s.settimeout(0.1)\n"
                                    " try: s.connect(('%s',p))\n except OSError: pass\n time.sleep(0.05)"
                                    % lab.ip("vm3")])
            _take(col, 6, snaps)
            syn.wait()
            marks["fault_cleared"] = len(snaps)
            lab.clear_fault(f.id)
            _take(col, 3, snaps)
        elif name == "links":
            _take(col, 3, snaps)
            marks["fault_added"] = len(snaps)
            subprocess.run(["ip", "-n", lab.netns("hv1"), "link", "add", "wchd0", "type", "veth", "peer", "name", "wchd1"], check=True)
            _take(col, 2, snaps)
            f = lab.add_fault("mtu-mismatch", at="hv1:vx0", mtu=1400)
            subprocess.run(["ip", "-n", lab.netns("vm3"), "link", "set", "eth0", "down"], check=True)
            _take(col, 2, snaps)
            subprocess.run(["ip", "-n", lab.netns("vm3"), "link", "set", "eth0", "up"], check=True)
            subprocess.run(["ip", "-n", lab.netns("hv1"), "link", "del", "wchd0"], check=True)
            _take(col, 2, snaps)
            marks["fault_cleared"] = len(snaps)
            lab.clear_fault(f.id)
            _take(col, 2, snaps)
        elif name == "clean":
            _take(col, 40, snaps)
        else:
            raise SystemExit(f"unknown scenario {name}")
    finally:
        bg.kill()
    note = " ".join(f"{k}={v}" for k, v in marks.items())
    recording.dump(HERE / f"{name}.jsonl.gz", snaps, note=f"{name}: interval {INTERVAL_S} s {note}".strip())
    print(f"{name}: {len(snaps)} snapshots, {note}")


def guest_tx_stall(prefix):
    """The VM lab (tests/integration/vm_lab.toml): ns1 pings both VMs; vm1's NIC
    stops sending inside the guest, then resumes."""
    import tomllib

    topology = HERE.parents[1] / "integration" / "vm_lab.toml"
    data = tomllib.loads(topology.read_text())
    data["prefix"] = prefix
    lab_mod.down(prefix)
    lab = lab_mod.up(spec.parse(data, str(topology)))
    snaps, marks = [], {}
    pings = [_pinger(lab, "ns1", vm, "-i", "0.1") for vm in ("vm1", "vm2")]
    try:
        with Collector(only=lambda ns: (ns.name or "").startswith(prefix + "-")) as col:
            _take(col, 4, snaps)
            marks["fault_added"] = len(snaps)
            f = lab.add_fault("guest-tx-stall", at="vm1")
            _take(col, 8, snaps)
            marks["fault_cleared"] = len(snaps)
            lab.clear_fault(f.id)
            _take(col, 6, snaps)
    finally:
        for p in pings:
            p.kill()
        lab_mod.down(prefix)
    note = " ".join(f"{k}={v}" for k, v in marks.items())
    recording.dump(HERE / "guest-tx-stall.jsonl.gz", snaps, note=f"guest-tx-stall: interval {INTERVAL_S} s {note}")
    print(f"guest-tx-stall: {len(snaps)} snapshots, {note}")


def main(argv):
    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "wch")
    names = argv or ["tx-stall", "queue-overflow", "conntrack-full", "links", "clean", "mq-stall"]
    if names == ["mq-stall"]:  # needs no lab: only its own two namespaces
        with Collector(only=lambda ns: (ns.name or "").startswith(prefix + "-mq")) as col:
            mq_stall(prefix, col)
        return
    if names == ["guest-tx-stall"]:  # its own lab, with QEMU guests
        guest_tx_stall(prefix)
        return
    lab_mod.down(prefix)
    lab = lab_mod.up(spec.default(prefix))
    try:
        with Collector(only=lambda ns: (ns.name or "").startswith(prefix + "-")) as col:
            for name in names:
                if name == "mq-stall":
                    mq_stall(prefix, col)
                else:
                    scenario(lab, col, name)
    finally:
        lab_mod.down(prefix)


if __name__ == "__main__":
    main(sys.argv[1:])
