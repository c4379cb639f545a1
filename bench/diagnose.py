"""Time to verdict of `vnetdiag diagnose` (run as root, about two minutes):

    sudo .venv/bin/python bench/diagnose.py [--prefix dgb] [--window 5] [--rounds 3]

On the lab with its background traffic on, for each fault (loss at hv1:vm1-p,
queue-overflow at hv1:ul0, mtu-mismatch at hv2:vx0, conntrack-full at hv1),
interleaved rounds of:

* vnetdiag: ``vnetdiag diagnose --from vm1 --to vm3 --duration W --json``,
  wall time from the command to its verdict;
* the public reference: what the least an engineer runs to get the kernel's
  drop reasons for the same symptom takes, i.e. bpftrace counting
  skb:kfree_skb by reason (started, attached) around ``vnetdiag probe`` for
  the same window against a ``vnetdiag serve`` in vm3, then stopped.

Prints the medians and their ratio, and whether the top verdict named the
fault's place. Nothing is asserted: numbers are what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vnetdiag import lab as lab_mod
from vnetdiag.lab import spec

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
FAULTS = (("loss", "hv1:vm1-p", {"percent": 3}, []), ("queue-overflow", "hv1:ul0", {}, ["--request-bytes", "1000"]),
          ("mtu-mismatch", "hv2:vx0", {}, ["--pattern", "udp-rr", "--request-bytes", "1400"]),
          ("conntrack-full", "hv1", {}, []))
BPFTRACE = "tracepoint:skb:kfree_skb { @[args->reason] = count(); } BEGIN { printf(\"ready\\n\"); }"


def vnetdiag_round(lab, window: float, extra: list[str]) -> tuple[float, dict]:
    t0 = time.monotonic()
    out = subprocess.run([VNETDIAG, "diagnose", "--from", lab.netns("vm1"), "--to", lab.netns("vm3"),
                          "--duration", str(window), "--json", *extra], capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t0
    return wall, json.loads(out.stdout) if out.stdout.strip() else {}


def reference_round(lab, window: float, port: int, extra: list[str]) -> float:
    t0 = time.monotonic()
    bt = subprocess.Popen(["bpftrace", "-e", BPFTRACE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in bt.stdout:
            if "ready" in line:
                break
        subprocess.run([VNETDIAG, "probe", f"{lab.ip('vm3')}:{port}", "--netns", lab.netns("vm1"), "--duration",
                        str(window), "--streams", "16", "--json", *extra], capture_output=True, timeout=120)
    finally:
        bt.send_signal(signal.SIGINT)
        bt.communicate(timeout=30)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="dgb")
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lab_mod.down(args.prefix)
    lab = lab_mod.up(spec.default(args.prefix))
    port = 7790
    server = subprocess.Popen([VNETDIAG, "serve", "--netns", lab.netns("vm3"), "--listen", f"{lab.ip('vm3')}:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lab.start_background()
        print(f"window {args.window:g} s, {args.rounds} rounds per fault, load average {os.getloadavg()[0]:.1f}")
        print(f"{'fault':<30} {'vnetdiag s':>10} {'bpftrace+probe s':>17} {'ratio':>6}  top verdict")
        for kind, at, opts, extra in FAULTS:
            ours, ref, tops = [], [], []
            fault = lab.add_fault(kind, at, **opts)
            try:
                for _ in range(args.rounds):
                    wall, doc = vnetdiag_round(lab, args.window, extra)
                    ours.append(wall)
                    v = (doc.get("verdicts") or [{}])[0]
                    tops.append(f"{v.get('netns')}:{v.get('device')} {v.get('cause')} {v.get('confidence')}")
                    ref.append(reference_round(lab, args.window, port, extra))
            finally:
                lab.clear_faults()
            a, b = statistics.median(ours), statistics.median(ref)
            print(f"{kind + '@' + at:<30} {a:>10.2f} {b:>17.2f} {a / b:>6.2f}  {tops[-1]} "
                  f"(fault {fault.node}:{fault.device or ''})")
    finally:
        server.terminate()
        server.wait(timeout=10)
        lab.stop_background()
        lab_mod.down(args.prefix)


if __name__ == "__main__":
    main()
