"""vnetdiag lab up|down|status|exec|fault: the lab of real namespaces."""

from __future__ import annotations

import argparse
import os
import time

from vnetdiag.errors import UsageError


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    from vnetdiag.lab.faults import FAULTS

    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    prefix = argparse.ArgumentParser(add_help=False)
    prefix.add_argument("--prefix", help="lab prefix (default: $VNETDIAG_LAB_PREFIX or vnd)")

    p = sub.add_parser("up", parents=[common, prefix], help="build the lab")
    p.add_argument("--topology", metavar="FILE", help="TOML topology (default: the built-in lab; docs/lab.md)")
    sub.add_parser("down", parents=[common, prefix], help="remove the lab and undo its faults (idempotent)")
    sub.add_parser("status", parents=[common, prefix], help="topology, addresses, backends and active faults")
    p = sub.add_parser("exec", parents=[common, prefix], help="run a command inside a lab node: lab exec vm1 -- ping ...")
    p.add_argument("node", help="lab node to run in (vm1, hv1, ...)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command and its arguments")

    p = sub.add_parser("background", parents=[common, prefix],
                       help="start or stop other tenants' traffic and IPv6 multicast across the lab")
    p.add_argument("switch", choices=("start", "stop"), help="start (replacing any running) or stop")
    fault = sub.add_parser("fault", help="add, clear or list faults").add_subparsers(
        dest="fault_command", metavar="ACTION", required=True)
    kinds = "; ".join(f"{f.kind}: {f.summary}" for f in FAULTS)
    p = fault.add_parser("add", parents=[common, prefix], help="inject a fault", description=kinds)
    p.add_argument("kind", choices=[f.kind for f in FAULTS], help="the fault (see the list above)")
    p.add_argument("--at", required=True, metavar="NODE:DEVICE", help="where, e.g. hv1:vm1-p (conntrack-full: hv1)")
    seen: set[str] = set()
    for f in FAULTS:
        for opt in f.options:
            if opt.name not in seen:
                seen.add(opt.name)
                p.add_argument(f"--{opt.name.replace('_', '-')}", dest=f"opt_{opt.name}", metavar=opt.type.__name__.upper(),
                               help=f"{opt.help} ({f.kind}; default {opt.default})")
    p = fault.add_parser("clear", parents=[common, prefix], help="undo faults (all unless ids are given)")
    p.add_argument("ids", nargs="*", help="fault ids from 'lab fault list' (default: every fault)")
    fault.add_parser("list", parents=[common, prefix], help="active faults")


def run(args, out) -> int:
    from vnetdiag import lab as lab_mod

    action = args.lab_command
    if action == "up":
        from vnetdiag.lab import spec as spec_mod

        spec = spec_mod.load(args.topology) if args.topology else spec_mod.default(args.prefix or lab_mod.default_prefix())
        if args.topology and args.prefix:
            raise UsageError("--prefix and --topology together: set prefix = ... in the topology file")
        started = time.monotonic()
        lab = lab_mod.up(spec, progress=lambda m: out.info(f"lab up: {m}"))
        out.info(f"lab up: {lab.prefix} ready in {time.monotonic() - started:.2f} s")
        return _status(lab, out)
    if action == "down":
        started = time.monotonic()
        failures = lab_mod.down(args.prefix, progress=lambda m: out.info(f"lab down: {m}"))
        for f in failures:
            out.info(f"lab down: could not undo {f}")
        if out.json_mode:
            out.document({"schema": "vnetdiag.lab-down/1", "prefix": args.prefix or lab_mod.default_prefix(),
                          "failures": failures, "duration_s": round(time.monotonic() - started, 3)})
        else:
            out.info(f"lab down: done in {time.monotonic() - started:.2f} s")
        return 3 if failures else 0
    lab = lab_mod.attach(args.prefix)
    if action == "status":
        return _status(lab, out)
    if action == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise UsageError("lab exec needs a command", hint="vnetdiag lab exec vm1 -- ping -c1 198.51.100.3")
        from vnetdiag.lab import shell

        full = shell.argv_in(lab.netns(args.node), argv)
        os.execvp(full[0], full)
    if action == "fault":
        return _fault(lab, args, out)
    if action == "background":
        pids = lab.start_background() if args.switch == "start" else []
        failures = [] if args.switch == "start" else lab.stop_background()
        if out.json_mode:
            out.document({"schema": "vnetdiag.lab-background/1", "prefix": lab.prefix, "running": pids,
                          "failures": failures})
        else:
            out.console.print(f"background traffic: {len(pids)} senders" if pids else "background traffic stopped")
        return 3 if failures else 0
    raise UsageError(f"unknown lab action {action}")


def _fault(lab, args, out) -> int:
    import dataclasses

    if args.fault_command == "add":
        given = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
        record = lab.add_fault(args.kind, args.at, **given)
        if out.json_mode:
            out.document({"schema": "vnetdiag.lab-fault/1", **dataclasses.asdict(record)})
        else:
            opts = " ".join(f"{k}={v}" for k, v in record.options.items())
            out.console.print(f"{record.id}: {record.kind} at {record.at} {opts}")
        return 0
    if args.fault_command == "clear":
        ids = args.ids or [f.id for f in reversed(lab.faults())]
        cleared = [lab.clear_fault(i) for i in ids]
        if out.json_mode:
            out.document({"schema": "vnetdiag.lab-faults/1", "cleared": [dataclasses.asdict(f) for f in cleared]})
        else:
            for f in cleared:
                out.console.print(f"cleared {f.id}: {f.kind} at {f.at}")
            if not cleared:
                out.console.print("no active faults")
        return 0
    faults = lab.faults()
    if out.json_mode:
        out.document({"schema": "vnetdiag.lab-faults/1", "faults": [dataclasses.asdict(f) for f in faults]})
    else:
        for f in faults:
            opts = " ".join(f"{k}={v}" for k, v in f.options.items())
            out.console.print(f"{f.id}: {f.kind} at {f.at} {opts}")
        if not faults:
            out.console.print("no active faults")
    return 0


def _status(lab, out) -> int:
    doc = lab.status()
    if out.json_mode:
        out.document(doc)
        return 0
    from vnetdiag.report.tables import Col, fitted

    rows = []
    for node in doc["nodes"]:
        first = True
        role = node["role"] + (" +firewall" if node["firewall"] else "")
        ns = (node["netns"] or "(QEMU guest)") + ("" if node["present"] else " [red](missing)[/red]")
        for dev in node["devices"] or [{}]:
            rows.append((node["name"] if first else "", role if first else "", ns if first else "",
                         dev.get("name", ""), dev.get("address") or "", dev.get("master") or "",
                         str(dev.get("mtu") or "")))
            first = False
    cols = (Col(header="node", key=True), Col(header="role", drop=2), Col(header="namespace", key=True),
            Col(header="device", key=True), Col(header="address", key=True), Col(header="master", key=True),
            Col(header="mtu", justify="right", drop=1))
    out.console.print(fitted(cols, rows, title=f"lab {doc['prefix']} ({doc['source']})"))
    for x in doc["vxlans"]:
        out.console.print(f"vxlan {x['node']}:{x['name']} vni {x['vni']} over {x['underlay']} "
                          f"{x['local']} -> {', '.join(x['remotes'])} port {x['dstport']}")
    for b in doc["backends"]:
        state = "running" if b["alive"] else "[red]not running[/red]"
        out.console.print(f"backend {b['macvtap']} -> {b['guest']}: pid {b['pid']} {state}")
    for v in doc.get("vms", []):
        state = "running" if v["alive"] else "[red]not running[/red]"
        nics = ", ".join(f"{n['mac']} on {n['host_kind']} {n['host']}" for n in v["nics"])
        served = f"; vnetdiag serve on port {v['serve_port']}" if v.get("serve_port") else ""
        out.console.print(f"vm {v['node']}: QEMU pid {v['pid']} {state}, {v['accel']}, booted in "
                          f"{v.get('boot_s', '?')} s; {nics}{served}")
    faults = doc["faults"]
    out.console.print("faults: " + (", ".join(f"{f['id']} {f['kind']} at {f['node']}:{f['device']}" for f in faults)
                                    if faults else "none"))
    return 0
