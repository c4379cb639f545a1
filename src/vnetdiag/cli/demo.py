"""vnetdiag demo: build the lab, inject a fault, diagnose across it, tear down."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from vnetdiag.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class DemoCase:
    """Where the demo puts a fault and how it probes across it."""

    at: str
    options: dict
    source: str
    target: str
    probe: dict = field(default_factory=dict)
    """diagnose() options that make the fault show (larger messages for MTU...)."""


DEMO_CASES: dict[str, DemoCase] = {
    "loss": DemoCase(at="hv1:vm1-p", options={"percent": 2}, source="vm1", target="vm3"),
    # 16 one-byte transactions never fill a 3000-byte queue: send 1000-byte requests.
    "queue-overflow": DemoCase(at="hv1:vx0", options={}, source="vm1", target="vm3",
                               probe={"request_bytes": 1000}),
    "tx-stall": DemoCase(at="hv2:vm3-p", options={}, source="vm1", target="vm3"),
    # A vhost that keeps up most of the time (seed 001): a short ring, a bounded drain rate.
    "slow-guest": DemoCase(at="hv1:mvtap0", options={"rate": 2000, "queue_len": 4}, source="vm1", target="vm2"),
    "conntrack-full": DemoCase(at="hv1", options={}, source="vm1", target="vm3", probe={"pattern": "tcp-crr"}),
    # TCP hides it (GSO segments pass the bridge's MTU check); UDP datagrams
    # larger than the MTU, sent with DF as Linux does, are dropped.
    "mtu-mismatch": DemoCase(at="hv1:vx0", options={}, source="vm1", target="vm3",
                             probe={"pattern": "udp-rr", "request_bytes": 1400}),
}


def configure(parser, common) -> None:
    parser.add_argument("--fault", choices=sorted(DEMO_CASES), help="fault to inject (default: random)")
    parser.add_argument("--seed", type=int, help="seed for the random choice of fault")
    parser.add_argument("--duration", type=float, default=4.0, metavar="S", help="diagnose window (default 4 s)")
    parser.add_argument("--report", default="vnetdiag-demo.html", metavar="FILE.html",
                        help="where to write the HTML report (default ./vnetdiag-demo.html)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up (remove it with: vnetdiag lab down)")


def found_it(diagnosis, fault) -> bool:
    """The top verdict is at the fault's place (its namespace for node-wide faults)."""
    if not diagnosis.verdicts:
        return False
    top = diagnosis.verdicts[0]
    node = (top.netns or "").split("-", 1)[-1]
    return node == fault.node and (not fault.device or top.device == fault.device)


def run(args, out) -> int:
    from vnetdiag import lab as lab_mod
    from vnetdiag.diagnose import diagnose, document
    from vnetdiag.lab import spec
    from vnetdiag.report import diagnosis as render

    kind = args.fault or random.Random(args.seed).choice(sorted(DEMO_CASES))
    case = DEMO_CASES.get(kind)
    if case is None:
        raise UsageError(f"no demo for fault {kind!r}")
    prefix = lab_mod.default_prefix()
    started = time.monotonic()
    lab = lab_mod.up(spec.default(prefix), progress=lambda m: out.info(f"lab up: {m}"))
    try:
        out.info(f"lab up: ready in {time.monotonic() - started:.2f} s")
        if not out.json_mode:
            from vnetdiag.cli.lab import _status

            _status(lab, out)
        fault = lab.add_fault(kind, case.at, **case.options)
        out.info(f"demo: injected {fault.kind} at {fault.at}; diagnosing {case.source} -> {case.target}")
        result = diagnose(source=case.source, target=case.target, duration_s=args.duration,
                          progress=lambda m: out.info(f"diagnose: {m}"), **case.probe)
        with open(args.report, "w") as f:
            f.write(render.html(result))
        found = found_it(result.diagnosis, fault)
        if out.json_mode:
            out.document({**document(result), "demo": {"fault": {"kind": fault.kind, "at": fault.at,
                                                                  "options": fault.options},
                                                        "found": found, "report": args.report}})
        else:
            render.terminal(result, out.console)
            verdict = "[green]found[/green]" if found else "[red]missed[/red]"
            out.console.print(f"demo: injected {fault.kind} at {fault.at}; top verdict: {verdict}. "
                              f"Report: {args.report}")
    finally:
        if args.keep:
            out.info(f"demo: lab {prefix} left up; remove it with: vnetdiag lab down")
        else:
            lab_mod.down(prefix, progress=lambda m: out.info(f"lab down: {m}"))
    return 0 if found else 1
