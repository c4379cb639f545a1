"""vnetdiag fleet top: the worst drop places across the fleet, from Prometheus."""

from __future__ import annotations


def configure(parser, common) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    top = sub.add_parser("top", parents=[common], help="rank drop places by rate, from Prometheus' HTTP API",
                         description="the worst places (host, namespace, device, reason) by drop rate, and the "
                                     "command to run next for each")
    top.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL (http://HOST:9090)")
    top.add_argument("--limit", type=int, default=10, help="places to show")
    top.add_argument("--window", default="5m", help="rate window, in PromQL's duration syntax")
    top.add_argument("--hosts", metavar="FILE", help="the hosts file to name in the diagnose commands")


def run(args, out) -> int:
    from vnetdiag.fleet.top import next_commands, top
    from vnetdiag.model.plain import to_plain

    places, alerts = top(prometheus=args.prometheus, limit=args.limit, window=args.window)
    if out.json_mode:
        out.document({"schema": "vnetdiag.fleet-top/1", "prometheus": args.prometheus, "window": args.window,
                      "places": [to_plain(p) | {"next": next_commands(p, hosts_file=args.hosts)} for p in places],
                      "alerts": [to_plain(a) for a in alerts]})
        return 1 if places else 0
    if not places:
        out.console.print(f"no drops in the last {args.window} across the fleet")
        return 0
    from vnetdiag.report.tables import Col, fitted

    rows = [(str(i), p.host, p.netns, p.device or "(no device)", p.reason, f"{p.rate_per_s:.2f}")
            for i, p in enumerate(places, 1)]
    cols = (Col(header="#", justify="right", key=True), Col(header="host", key=True), Col(header="netns", key=True),
            Col(header="device", key=True), Col(header="reason", key=True), Col(header="drops/s", justify="right", key=True))
    out.console.print(fitted(cols, rows))
    for a in alerts:
        out.console.print(f"alert {a.name} {a.state} for {a.host}"
                          + (f" ({a.value:.2f} drops/s)" if a.value is not None else ""))
    worst = places[0]
    out.console.print(f"next, for {worst.host} {worst.device} ({worst.reason}):")
    for cmd in next_commands(worst, hosts_file=args.hosts):
        out.console.print(f"  {cmd}", markup=False, highlight=False)
    return 1
