"""vnetdiag drops: a live table of kernel drops by namespace, device, reason, location."""

from __future__ import annotations

import argparse
import time

from vnetdiag.errors import Interrupted, UsageError


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, metavar="S",
                        help="trace for S seconds (default: until Ctrl-C; 10 s with --json)")
    parser.add_argument("--netns", metavar="NS", help="only drops in namespaces matching this name or glob "
                        "(device names are placed among these namespaces)")
    parser.add_argument("--device", metavar="DEV", help="only drops last seen on this device (glob)")
    parser.add_argument("--reason", metavar="R", help="only this drop reason (glob, e.g. QDISC_DROP)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh of the live table")
    parser.add_argument("--light", action="store_true",
                        help="trace only the drops themselves: reason and location, no device or namespace "
                             "(much cheaper under heavy traffic; tracefs backend)")
    parser.add_argument("--backend", choices=("auto", "ebpf", "tracefs"), default="auto",
                        help="ebpf: bpftrace reads each dropped skb (exact namespace, device, flow); tracefs: the "
                             "ftrace reader; auto (default): ebpf when it can run here, else tracefs with a note")
    parser.add_argument("--filter", metavar="EXPR", help="per-packet records for drops matching pcap-filter words "
                        "(host/src/dst ADDR, port/sport/dport N, tcp/udp/icmp/ip/ip6, not/and/or; ebpf backend)")
    parser.add_argument("--pcapng", metavar="FILE", help="write the dropped packets' first bytes to FILE as pcapng "
                        "(one interface per namespace and device, a comment naming reason, location and namespace "
                        "on each packet; those matching --filter, else every drop; ebpf backend)")
    from vnetdiag.cli import hostforms

    hostforms.add_option(parser)


def run(args, out) -> int:
    from vnetdiag.collect.droptrace import DropTrace

    duration = args.duration if args.duration is not None else (10.0 if out.json_mode else None)
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be a positive number of seconds", hint="e.g. --duration 10")
    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds", hint="e.g. --interval 1")
    if args.light and (args.netns or args.device):
        raise UsageError("--light drops carry no device or namespace, so --netns and --device cannot select them",
                         hint="drop --light, or filter with --reason")
    if args.light and args.backend == "ebpf":
        raise UsageError("--light is the tracefs backend's reasons-only mode", hint="drop --light or --backend ebpf")
    from vnetdiag.cli import hostforms

    groups = hostforms.by_host([args.netns] if args.netns else [], getattr(args, "hosts", None))
    if groups is not None:
        return _on_host(args, out, groups, duration)
    namespaces = [args.netns] if args.netns else None
    backend, ebpf_options = "tracefs" if args.light else args.backend, {}
    if args.pcapng:
        from vnetdiag.cli import drops_pcapng

        backend, ebpf_options = drops_pcapng.options(args)
    window = DropTrace(backend=backend, filter=args.filter, namespaces=namespaces, light=args.light,
                       **ebpf_options)
    wall_offset_ns = time.time_ns() - time.monotonic_ns()  # records are CLOCK_MONOTONIC

    def pick(result):
        return _pick(result, args, args.netns)

    def tables(result):
        return _tables(result, args, args.netns)

    try:
        window.start()
        deadline = None if duration is None else time.monotonic() + duration
        # On stderr with --json too: the moment from which a signal ends the
        # window with a result rather than interrupting the start.
        out.info("tracing kernel drops" + (f" for {duration:g} s" if duration else " until Ctrl-C") + " ...")
        if out.json_mode:
            _wait(deadline, args.interval, lambda: None)
        else:
            from rich.live import Live

            with Live(console=out.console, auto_refresh=False, transient=True) as live:
                def refresh():
                    from rich.console import Group

                    live.update(Group(*tables(window.snapshot())), refresh=True)
                _wait(deadline, args.interval, refresh)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the window; the result below is still printed
    finally:
        result = window.stop() if window.backend else None
    if result is None:
        raise Interrupted("interrupted before tracing started")
    doc = _document(result, args, args.netns)
    if result.backend == "ebpf" and args.pcapng:
        doc["pcapng"] = drops_pcapng.write(args, result, pick(result), wall_offset_ns, out)
    if out.json_mode:
        out.document(doc)
    else:
        if result.note:
            out.info(f"note: {result.note}")
        for table in tables(result):
            out.console.print(table)
    return 0


def _pick(result, args, netns: str | None):
    from vnetdiag.analyze.drops import filter_drops

    if result.backend == "ebpf":
        from vnetdiag.analyze.drop_flows import filter_tallies

        return filter_tallies(result.tallies, netns=netns, device=args.device, reason=args.reason)
    return filter_drops(result.analysis.drops, netns=netns, device=args.device, reason=args.reason)


def _tables(result, args, netns: str | None):
    if result.backend == "ebpf":
        from vnetdiag.cli import drops_ebpf_view

        return drops_ebpf_view.tables(result, _pick(result, args, netns))
    from vnetdiag.cli import tracing_view as view

    return [view.drops_table(result.analysis, _pick(result, args, netns))]


def _document(result, args, netns: str | None) -> dict:
    if result.backend == "ebpf":
        from vnetdiag.cli import drops_ebpf_view

        return drops_ebpf_view.document(result, _pick(result, args, netns))
    from vnetdiag.cli import tracing_view as view

    return {**view.drops_document(result.analysis, _pick(result, args, netns)), "backend": "tracefs",
            "note": result.note}


def _on_host(args, out, groups, duration: float | None) -> int:
    """--netns HOST:NS: a trace window of ``duration`` on that host's agent, shown when it ends."""
    import dataclasses

    from vnetdiag.cli import hostforms
    from vnetdiag.model.fleet import TraceAnswer

    if duration is None:
        raise UsageError("across hosts, drops traces a window: give --duration S", hint="e.g. --duration 10")
    if args.light or args.pcapng:
        raise UsageError("--light and --pcapng are not available across hosts yet", hint="run it on the host")
    name, _host, (netns,) = hostforms.one_host(groups, "drops")

    def window(fleet) -> None:
        fleet.call(name, "trace_start", backend=args.backend, filter=args.filter)
        out.info(f"tracing kernel drops on {name} for {duration:g} s ...")
        time.sleep(duration)  # the window the user asked for

    answer = hostforms.ask(groups, "trace_stop", lambda _specs: {}, TraceAnswer, during=window)[name]
    result = dataclasses.replace(answer.drops, analysis=answer.analysis)
    glob = None if netns in ("", "*") else netns
    if out.json_mode:
        out.document(hostforms.document({name: _document(result, args, glob)}))
        return 0
    if result.note:
        out.info(f"note: {result.note}")
    hostforms.heading(out, name)
    for table in _tables(result, args, glob):
        out.console.print(table)
    return 0


def _wait(deadline: float | None, interval: float, tick) -> None:
    while deadline is None or time.monotonic() < deadline:
        left = interval if deadline is None else min(interval, deadline - time.monotonic())
        time.sleep(max(0.0, left))
        tick()
