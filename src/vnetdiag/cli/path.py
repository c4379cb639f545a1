"""vnetdiag path FROM TO: the devices a packet crosses, in both directions."""

from __future__ import annotations


def configure(parser, common) -> None:
    parser.add_argument("source", metavar="FROM", help="a namespace in any form (name, inode, netns:INODE, pid:PID, "
                        "/proc/PID/ns/net) or a lab node, optionally :ADDRESS")
    parser.add_argument("destination", metavar="TO", help="the same forms, optionally :ADDRESS (default: its first address)")
    parser.add_argument("--one-way", action="store_true", help="only FROM -> TO")


def run(args, out) -> int:
    from vnetdiag.collect import Collector
    from vnetdiag.errors import NotFoundError, PrivilegeError
    from vnetdiag.paths import round_trip

    with Collector(driver_stats=False) as col:
        try:
            results = round_trip(col, args.source, args.destination, one_way=args.one_way)
        except NotFoundError as exc:
            refused = [p for p in col.pool.errors.values() if "needs root" in p]
            if refused:  # the namespace may exist; we were not allowed in
                raise PrivilegeError(f"{exc.message}; {len(refused)} namespaces could not be read without root",
                                     hint="run it with sudo") from None
            raise
    if out.json_mode:
        from vnetdiag.topology.path import document

        out.document(document(results))
        return 0 if all(r.complete for r in results) else 1
    from vnetdiag.report.tables import Col, fitted

    cols = (Col(header="#", justify="right", key=True), Col(header="namespace", key=True),
            Col(header="device", key=True), Col(header="kind", drop=2), Col(header="role", drop=1), Col(header="why"))
    for r in results:
        rows = [(str(k), h.netns_name or "", h.name, h.kind or "", h.role, h.how) for k, h in enumerate(r.hops, 1)]
        out.console.print(fitted(cols, rows, title_justify="left",
                                 title=f"{r.source} -> {r.destination} ({r.src_address or '?'} -> {r.dst_address})"))
        if r.complete:
            out.console.print(f"reached {r.destination} in {len(r.hops)} hops")
        else:
            out.console.print(f"stopped: {r.stopped}", markup=False)
            if r.flood_candidates:
                out.console.print(f"flood candidates: {', '.join(r.flood_candidates)}", markup=False)
    return 0 if all(r.complete for r in results) else 1
