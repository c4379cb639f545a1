"""vnetdiag drops: a live table of kernel drops by namespace, device, reason, location."""

from __future__ import annotations

import argparse
import time

from vnetdiag.errors import UsageError


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
                             "(much cheaper under heavy traffic)")


def run(args, out) -> int:
    from vnetdiag.analyze.drops import filter_drops
    from vnetdiag.cli import tracing_view as view
    from vnetdiag.collect.tracewindow import TraceWindow

    duration = args.duration if args.duration is not None else (10.0 if out.json_mode else None)
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be a positive number of seconds", hint="e.g. --duration 10")
    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds", hint="e.g. --interval 1")
    if args.light and (args.netns or args.device):
        raise UsageError("--light drops carry no device or namespace, so --netns and --device cannot select them",
                         hint="drop --light, or filter with --reason")
    namespaces = [args.netns] if args.netns else None
    window = TraceWindow(events="reasons" if args.light else "drops", namespaces=namespaces)

    def pick(result):
        return filter_drops(result.drops, netns=args.netns, device=args.device, reason=args.reason)

    try:
        window.start()
        deadline = None if duration is None else time.monotonic() + duration
        if out.json_mode:
            _wait(deadline, args.interval, lambda: None)
        else:
            from rich.live import Live

            out.info("tracing kernel drops" + (f" for {duration:g} s" if duration else " until Ctrl-C") + " ...")
            with Live(console=out.console, auto_refresh=False, transient=True) as live:
                def refresh():
                    snap = window.snapshot()
                    live.update(view.drops_table(snap, pick(snap)), refresh=True)
                _wait(deadline, args.interval, refresh)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the window; the result below is still printed
    finally:
        result = window.stop()
    drops = pick(result)
    if out.json_mode:
        out.document(view.drops_document(result, drops))
    else:
        out.console.print(view.drops_table(result, drops))
    return 0


def _wait(deadline: float | None, interval: float, tick) -> None:
    while deadline is None or time.monotonic() < deadline:
        left = interval if deadline is None else min(interval, deadline - time.monotonic())
        time.sleep(max(0.0, left))
        tick()
