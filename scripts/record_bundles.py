"""Record diagnose bundles of every lab fault, with both drop tracers, for the
replay tests (tests/golden/bundles/lab/). Run as root from the repository:

    .venv/bin/python scripts/record_bundles.py [--prefix rb] [--only NAME]

Each case builds on the default lab (IPv6 on), or with --vm on the VM lab
(tests/integration/vm_lab.toml: QEMU guests), injects one fault, runs
diagnose for 2 s and writes NAME.json.gz (the bundle) and NAME.expect.json:
the truth, from the fault's placement and, for rule faults, from the rule's
own counter of the probe's packets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vnetdiag import lab as lab_mod
from vnetdiag.collect import bundlefile
from vnetdiag.diagnose import diagnose
from vnetdiag.lab import spec

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "bundles" / "lab"

# name -> (fault kind, at, fault options, diagnose options, expected cause, destination)
CASES = {
    "loss-hv1-vm1p": ("loss", "hv1:vm1-p", {"percent": 3}, {}, "drop", "vm3"),
    "loss-fabric-hv2p": ("loss", "fabric:hv2-p", {"percent": 3}, {}, "drop", "vm3"),
    "queue-overflow-hv1-vx0": ("queue-overflow", "hv1:vx0", {}, {"request_bytes": 1000}, "drop", "vm3"),
    "tx-stall-hv2-vm3p": ("tx-stall", "hv2:vm3-p", {}, {}, "tx-stall", "vm3"),
    "tx-stall-hv2-vm3p-cold": ("tx-stall", "hv2:vm3-p", {}, {}, "tx-stall", "vm3"),
    "conntrack-full-hv1": ("conntrack-full", "hv1", {}, {}, "conntrack-full", "vm3"),
    "mtu-hv1-vx0": ("mtu-mismatch", "hv1:vx0", {}, {"pattern": "udp-rr", "request_bytes": 1400}, "mtu-mismatch",
                    "vm3"),
    "slow-guest-hv1-mvtap0": ("slow-guest", "hv1:mvtap0", {"rate": 2000, "queue_len": 4}, {}, "drop", "vm2"),
    "clean": (None, None, {}, {}, None, "vm3"),
}
COLD = {"tx-stall-hv2-vm3p-cold"}
"""Cases whose guests forget their neighbours first, as on a fresh link (vnetdiag
demo): the probe's first packets then wait for ARP, which the fault stops too."""
# On the VM lab (tests/integration/vm_lab.toml), from ns1: name -> (fault kind,
# at, fault options, expected cause, (node, device) where, destination VM).
VM_TOPOLOGY = OUT.parents[2] / "integration" / "vm_lab.toml"
VM_CASES = {
    "guest-tx-stall-vm1": ("guest-tx-stall", "vm1", {}, "guest-tx-stall", ("hv1", "vm1-t0"), "vm1"),
}


def record_vms(prefix: str, backends) -> None:
    import tomllib

    data = tomllib.loads(VM_TOPOLOGY.read_text())
    data["prefix"] = prefix
    lab_mod.down(prefix)
    lab = lab_mod.up(spec.parse(data, str(VM_TOPOLOGY)))
    try:
        for name, (kind, at, fopts, cause, (node, device), dst) in VM_CASES.items():
            for backend in backends:
                lab.clear_faults()
                # ns1 knows the VM's MAC before the fault (a guest that cannot send answers no ARP).
                lab.run("ns1", ["ping", "-c", "1", "-W", "2", lab.ip(dst)])
                lab.add_fault(kind, at, **fopts)
                run = diagnose(source=lab.netns("ns1"), target=f"{prefix}:{dst}", duration_s=2.0,
                               backend=backend)
                _write(f"{name}-{backend}", run, {"cause": cause, "netns": lab.netns(node), "device": device,
                                                  "backend": backend})
    finally:
        lab_mod.down(prefix)


def _write(stem: str, run, expect: dict) -> None:
    bundlefile.write(OUT / f"{stem}.json.gz", run.bundle)
    (OUT / f"{stem}.expect.json").write_text(json.dumps(expect, indent=1) + "\n")
    top = run.diagnosis.verdicts[0] if run.diagnosis.verdicts else None
    print(f"{stem}: top {top.netns if top else None} {top.device if top else None} "
          f"{top.cause if top else None} conf {top.confidence if top else None} "
          f"probe_packets {top.probe_packets if top else None}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default="rb")
    ap.add_argument("--only", action="append")
    ap.add_argument("--backend", action="append", choices=("ebpf", "tracefs"))
    ap.add_argument("--vm", action="store_true", help="the VM cases (QEMU guests) instead of the default lab's")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.vm:
        record_vms(args.prefix, args.backend or ("ebpf", "tracefs"))
        return 0
    lab_mod.down(args.prefix)
    lab = lab_mod.up(spec.default(args.prefix))
    try:
        for name, (kind, at, fopts, dopts, cause, dst) in CASES.items():
            if args.only and name not in args.only:
                continue
            for backend in args.backend or ("ebpf", "tracefs"):
                lab.clear_faults()
                for guest in lab.guests:
                    lab.run(guest, ["ss", "-K", "-t", "state", "all"], check=False)
                    if name in COLD:
                        lab.run(guest, ["ip", "neigh", "flush", "all"])
                fault = lab.add_fault(kind, at, **fopts) if kind else None
                run = diagnose(source=lab.netns("vm1"), target=lab.netns(dst), duration_s=2.0, warmup_s=0.3,
                               backend=backend, **dopts)
                _write(f"{name}-{backend}", run, {"cause": cause, "netns": lab.netns(fault.node) if fault else None,
                                                  "device": fault.device if fault else None, "backend": backend})
    finally:
        lab_mod.down(args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
