"""vnetdiag export: serve the counters of every namespace as Prometheus /metrics."""

from __future__ import annotations

import signal
import threading

from vnetdiag.cli.options import listen_address


def configure(parser, common) -> None:
    parser.add_argument("--listen", type=listen_address, default="127.0.0.1:9469", metavar="ADDR:PORT",
                        help="address to serve /metrics on (default 127.0.0.1:9469, loopback only)")
    parser.add_argument("--netns", action="append", default=[], metavar="GLOB",
                        help="only namespaces whose name matches ('host' for the host); repeatable")
    parser.add_argument("--include-device", action="append", default=[], metavar="GLOB",
                        help="only devices matching (repeatable)")
    parser.add_argument("--exclude-device", action="append", default=[], metavar="GLOB",
                        help="leave out devices matching (repeatable)")
    parser.add_argument("--driver-stats", action="store_true",
                        help="also export ethtool -S counters, per queue with a queue label (many series)")
    parser.add_argument("--netstat-fields", metavar="REGEX", default=None,
                        help="netstat/snmp counters to export, as Section_Counter (default: node_exporter's set)")
    from vnetdiag.cli import export_drops

    export_drops.add_options(parser)


def run(args, out) -> int:
    import re

    from vnetdiag.errors import UsageError
    from vnetdiag.system.privileges import require_root
    from vnetdiag.watch.config import parse_listen

    addr, port = parse_listen(args.listen)
    if args.netstat_fields:
        try:
            re.compile(args.netstat_fields)
        except re.error as exc:
            raise UsageError(f"--netstat-fields: not a regular expression: {exc}") from None
    require_root("export")
    from contextlib import ExitStack

    from vnetdiag.cli import export_drops
    from vnetdiag.collect import Collector
    from vnetdiag.export.metrics import Filters
    from vnetdiag.export.server import MetricsServer, live_source
    from vnetdiag.watch.loop import namespace_filter

    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    with Collector(only=namespace_filter(tuple(args.netns)), details=True, driver_stats=args.driver_stats) as col:
        filters = Filters(devices_include=tuple(args.include_device), devices_exclude=tuple(args.exclude_device),
                          netstat_fields=args.netstat_fields, driver_stats=args.driver_stats)
        server = MetricsServer(live_source(col), filters, addr, port)
        out.info(f"vnetdiag export: serving http://{server.addr}:{server.port}/metrics")
        try:
            with ExitStack() as stack:
                export_drops.start(args, server, stack, out)
                stop.wait()
        finally:
            server.close()
            for s, h in old.items():
                signal.signal(s, h)
    return 0
