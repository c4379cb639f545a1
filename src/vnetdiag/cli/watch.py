"""vnetdiag watch: detectors on every interval, recovery actions, alert journal, optional /metrics."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time

from vnetdiag.cli.options import listen_address
from vnetdiag.errors import UsageError


def configure(parser, common) -> None:
    parser.add_argument("--interval", type=float, default=None, metavar="S",
                        help="seconds between snapshots (default: the config's interval_s, else 5)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML configuration (detectors, actions, exporter) (default: built-in defaults)")
    parser.add_argument("--dry-run", action="store_true",
                        help="journal and show the recovery actions that would run, run none")
    parser.add_argument("--journal", metavar="FILE",
                        help="append alerts and actions to this JSON-lines file (default: the config's, else none)")
    parser.add_argument("--listen", type=listen_address, metavar="ADDR:PORT",
                        help="also serve Prometheus /metrics here (default: the config's [exporter] listen, "
                             "else not served)")
    parser.add_argument("--netns", action="append", default=[], metavar="GLOB",
                        help="only namespaces whose name matches ('host' for the host); repeatable")
    parser.add_argument("--tracer", action="store_true",
                        help="also trace kernel drops (skb:kfree_skb) for per-device drop reasons; with the eBPF "
                             "backend and --listen, /metrics also serves vnetdiag_kernel_drops_total")
    parser.add_argument("--count", type=int, default=0, metavar="N", help="stop after N cycles (default: never)")


def build_config(args):
    from vnetdiag.model.watch import WatchConfig
    from vnetdiag.watch import config as cfg

    conf = cfg.load(args.config) if args.config else WatchConfig()
    changes: dict = {}
    if args.interval is not None:
        if args.interval <= 0:
            raise UsageError(f"--interval must be positive, not {args.interval}", hint="e.g. --interval 5")
        changes["interval_s"] = args.interval
    if args.netns:
        changes["namespaces"] = tuple(args.netns)
    if args.journal:
        changes["journal"] = args.journal
    if args.dry_run:
        changes["dry_run"] = True
    if args.tracer:
        changes["tracer"] = True
    if args.listen:
        cfg.parse_listen(args.listen)
        changes["exporter"] = dataclasses.replace(conf.exporter, listen=args.listen)
    if args.count < 0:
        raise UsageError("--count must be >= 0")
    return dataclasses.replace(conf, **changes)


def run(args, out) -> int:
    from vnetdiag.system.privileges import require_root

    conf = build_config(args)
    require_root("watch")
    from vnetdiag.export.metrics import Filters
    from vnetdiag.watch.config import parse_listen
    from vnetdiag.watch.loop import Watcher

    watcher = Watcher(conf)
    stop = threading.Event()
    reason = ["stopped"]

    def on_signal(signum, _frame):
        reason[0] = signal.Signals(signum).name
        stop.set()

    old: dict = {}
    server = None
    try:
        if conf.exporter.listen:
            from vnetdiag.export.server import MetricsServer

            addr, port = parse_listen(conf.exporter.listen)
            ex = conf.exporter
            server = MetricsServer(watcher.exporter_source(),
                                   Filters(devices_include=ex.devices_include, devices_exclude=ex.devices_exclude,
                                           netstat_fields=ex.netstat_fields, driver_stats=ex.driver_stats),
                                   addr, port)
            out.info(f"vnetdiag watch: serving /metrics on http://{server.addr}:{server.port}/metrics")
        watcher.start()  # inside the try: a tracer that started is stopped by close()
        if server is not None and watcher.tracer is not None and watcher.tracer.trace.ebpf is not None:
            from vnetdiag.export import drops

            drops.serve(server.registry, watcher.tracer.trace.ebpf, conf.namespaces)
            out.info("vnetdiag watch: kernel drops counted by eBPF on /metrics (vnetdiag_kernel_drops_total)")
        # After start: the tracer installs its own SIGTERM handler; ours ends the loop cleanly.
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        names = ", ".join(d.name for d in watcher.detectors)
        out.info(f"vnetdiag watch: every {conf.interval_s:g} s, detectors: {names}"
                 + (" (dry run)" if conf.dry_run else "") + (f", journal {conf.journal}" if conf.journal else ""))
        watcher.run(stop, lambda r: _show(out, r), count=args.count)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if server is not None:
            server.close()
        watcher.close(reason[0])
    return 0


def _show(out, result) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(result.snapshot.taken_unix_s))
    for t in result.transitions:
        if out.json_mode:
            out.stream.write(json.dumps({"schema": "vnetdiag.watch-event/1", "type": "alert", "change": t.change,
                                         "at_unix_s": t.at_unix_s, "alert": dataclasses.asdict(t.alert)}) + "\n")
        else:
            mark = {"raised": "RAISED ", "cleared": "CLEARED", "event": "EVENT  "}[t.change]
            out.stream.write(f"{stamp} {mark} {t.alert.detector}/{t.alert.kind}: {t.alert.summary}\n")
    for r in result.actions:
        if out.json_mode:
            out.stream.write(json.dumps({"schema": "vnetdiag.watch-event/1", "type": "action",
                                         "result": dataclasses.asdict(r)}) + "\n")
        else:
            out.stream.write(f"{stamp} ACTION  {r.detector} {r.subject}: {r.action} attempt {r.attempt}: "
                             f"{r.status} ({r.detail})\n")
    out.stream.flush()
