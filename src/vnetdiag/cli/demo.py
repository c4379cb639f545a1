"""vnetdiag demo: build the lab, inject a fault, show what moved, tear down."""

from __future__ import annotations

import random
import time

from vnetdiag.errors import UsageError

# Where the demo puts each fault, and which guests' traffic crosses it.
# (kind, at, options, source guest, destination guest)
DEMO_FAULTS: dict[str, tuple[str, dict, str, str]] = {
    "loss": ("hv1:vm1-p", {"percent": 5}, "vm1", "vm3"),
    "queue-overflow": ("hv1:vx0", {}, "vm1", "vm3"),
    "tx-stall": ("hv2:vm3-p", {}, "vm1", "vm3"),
    "slow-guest": ("hv1:mvtap0", {}, "vm1", "vm2"),
    "conntrack-full": ("hv1", {}, "vm1", "vm3"),
    "mtu-mismatch": ("hv1:vx0", {}, "vm1", "vm3"),
}


def configure(parser, common) -> None:
    parser.add_argument("--fault", choices=sorted(DEMO_FAULTS), help="fault to inject (default: random)")
    parser.add_argument("--seed", type=int, help="seed for the random choice of fault")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards (remove with: vnetdiag lab down)")


def _traffic(lab, kind: str, src: str, dst: str) -> None:
    """A few seconds of request/response-like traffic across the fault."""
    size = "1472" if kind == "mtu-mismatch" else "200"
    preload = ["-l", "20"] if kind == "queue-overflow" else []
    lab.run(src, ["ping", "-q", "-c", "300", "-i", "0.005", "-W", "1", "-s", size, "-M", "do", *preload,
                  lab.ip(dst)], check=False, timeout=30)
    if kind == "conntrack-full":
        lab.run(src, ["python3", "-c", "import socket;socket.create_connection(('%s', 9), timeout=2)" % lab.ip(dst)],
                check=False, timeout=10)


def run(args, out) -> int:
    from vnetdiag import lab as lab_mod
    from vnetdiag.analyze.deltas import delta
    from vnetdiag.collect import Collector
    from vnetdiag.lab import spec

    kind = args.fault or random.Random(args.seed).choice(sorted(DEMO_FAULTS))
    if kind not in DEMO_FAULTS:
        raise UsageError(f"no demo for fault {kind!r}")
    at, options, src, dst = DEMO_FAULTS[kind]
    prefix = lab_mod.default_prefix()
    started = time.monotonic()
    lab = lab_mod.up(spec.default(prefix), progress=lambda m: out.info(f"lab up: {m}"))
    try:
        out.info(f"lab up: ready in {time.monotonic() - started:.2f} s")
        if not out.json_mode:
            from vnetdiag.cli.lab import _status

            _status(lab, out)
        for a, b in ((src, dst), (dst, src)):
            lab.run(a, ["ping", "-c1", "-W1", lab.ip(b)], check=False)
        fault = lab.add_fault(kind, at, **options)
        out.info(f"demo: injected {fault.kind} at {fault.at}; sending traffic {src} -> {dst}")
        lab_netns = {lab.netns(n.name) for n in lab.spec.nodes}
        collector = Collector(only=lambda ns: ns.name in lab_netns)
        before = collector.snapshot()
        _traffic(lab, kind, src, dst)
        after = collector.snapshot()
        collector.close()
        moved = _drop_moves(delta(before, after))
        found = bool(moved) and moved[0][0] == fault.at
        if out.json_mode:
            out.document({"schema": "vnetdiag.demo/1", "fault": {"kind": fault.kind, "at": fault.at,
                                                                  "options": fault.options},
                          "traffic": {"from": src, "to": dst},
                          "moved": [{"at": a, "counter": c, "delta": d} for a, c, d in moved],
                          "found": found})
        else:
            _show(out, fault, moved, found)
    finally:
        if args.keep:
            out.info(f"demo: lab {prefix} left up; remove it with: vnetdiag lab down")
        else:
            lab_mod.down(prefix, progress=lambda m: out.info(f"lab down: {m}"))
    return 0 if found else 1


# Counters whose growth means loss or delay, in the order an engineer reads them.
_BAD = ("drop", "error", "overlimit", "missed", "fifo", "backlog", "insert_failed", "early_drop")


def _drop_moves(d) -> list[tuple[str, str, int]]:
    """(node:device or node, counter, delta) of loss counters that moved, largest first."""
    rows = []
    for i in d.interfaces:
        node = (i.netns_name or "").split("-", 1)[-1]
        for m in i.stats:
            if any(b in m.name for b in _BAD):
                rows.append((f"{node}:{i.name}", m.name, m.delta))
        for q in i.qdiscs:
            for m in q.moves:
                if any(b in m.name for b in _BAD):
                    rows.append((f"{node}:{i.name}", f"qdisc {q.kind} {q.handle} {m.name}", m.delta))
            if q.backlog_packets:
                rows.append((f"{node}:{i.name}", f"qdisc {q.kind} {q.handle} backlog_packets", q.backlog_packets))
    for n in d.namespaces:
        node = (n.netns_name or "").split("-", 1)[-1]
        for m in n.conntrack:
            if any(b in m.name for b in _BAD):
                rows.append((node, f"conntrack {m.name}", m.delta))
    return sorted(rows, key=lambda r: -r[2])


def _show(out, fault, moved, found) -> None:
    from rich.table import Table

    table = Table(title=f"loss counters that moved (fault {fault.kind} at {fault.at})")
    for col in ("where", "counter", "delta"):
        table.add_column(col, justify="right" if col == "delta" else "left")
    for where, counter, d in moved[:12]:
        style = "bold red" if where == fault.at else ""
        table.add_row(where, counter, str(d), style=style)
    out.console.print(table)
    if found:
        out.console.print(f"[green]found[/green]: the largest loss counter is at {fault.at}, where the fault is.")
    elif not moved:
        out.console.print(f"no loss counter moved: {fault.kind} at {fault.at} drops where no counter counts it "
                          "(the kernel drop tracer sees it: vnetdiag drops)")
    else:
        out.console.print(f"the largest loss counter is at {moved[0][0]}, not at {fault.at}")
