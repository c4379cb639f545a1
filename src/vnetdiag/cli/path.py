"""vnetdiag path FROM TO: the devices a packet crosses, in both directions."""

from __future__ import annotations

from dataclasses import asdict


def configure(parser, common) -> None:
    parser.add_argument("source", metavar="FROM", help="namespace (name, inode or 'host'), optionally :ADDRESS")
    parser.add_argument("destination", metavar="TO", help="namespace, optionally :ADDRESS (default: its first address)")
    parser.add_argument("--one-way", action="store_true", help="only FROM -> TO")


def run(args, out) -> int:
    from vnetdiag.collect import Collector
    from vnetdiag.topology import discover
    from vnetdiag.topology.path import resolve
    from vnetdiag.topology.routes import kernel_lookup

    from vnetdiag.errors import NotFoundError, PrivilegeError

    with Collector(driver_stats=False) as col:
        topo = discover(col.snapshot(), col.pool)
        lookup = kernel_lookup(col.pool)
        try:
            results = [resolve(topo, lookup, args.source, args.destination)]
        except NotFoundError as exc:
            refused = [p for p in topo.problems if "needs root" in p]
            if refused:  # the namespace may exist; we were not allowed in
                raise PrivilegeError(f"{exc.message}; {len(refused)} namespaces could not be read without root",
                                     hint="run it with sudo") from None
            raise
        if not args.one_way:
            back_src = args.destination.split(":", 1)[0]
            if results[0].src_address:
                back_dst = f"{args.source.split(':', 1)[0]}:{results[0].src_address}"
            else:
                back_dst = args.source
            results.append(resolve(topo, lookup, f"{back_src}:{results[0].dst_address}", back_dst))
    if out.json_mode:
        out.document({"schema": "vnetdiag.path/1",
                      "paths": [asdict(r) | {"hops": [asdict(h) | {"id": h.ref.id if h.ref else None}
                                                      for h in r.hops]} for r in results]})
        return 0 if all(r.complete for r in results) else 1
    from rich.table import Table

    if not out.console.is_terminal:
        out.console.width = 250
    for r in results:
        table = Table(title=f"{r.source} -> {r.destination} ({r.src_address or '?'} -> {r.dst_address})",
                      title_justify="left")
        for c in ("#", "namespace", "device", "kind", "role", "why"):
            table.add_column(c)
        for k, h in enumerate(r.hops, 1):
            table.add_row(str(k), h.netns_name or "", h.name, h.kind or "", h.role, h.how)
        out.console.print(table)
        if r.complete:
            out.console.print(f"reached {r.destination} in {len(r.hops)} hops")
        else:
            out.console.print(f"stopped: {r.stopped}", markup=False)
            if r.flood_candidates:
                out.console.print(f"flood candidates: {', '.join(r.flood_candidates)}", markup=False)
    return 0 if all(r.complete for r in results) else 1
