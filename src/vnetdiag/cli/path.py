"""vnetdiag path FROM TO: the devices a packet crosses, in both directions."""

from __future__ import annotations


def configure(parser, common) -> None:
    parser.add_argument("source", metavar="FROM", help="a namespace in any form (name, inode, netns:INODE, pid:PID, "
                        "/proc/PID/ns/net) or a lab node, optionally :ADDRESS")
    parser.add_argument("destination", metavar="TO", help="the same forms, optionally :ADDRESS (default: its first address)")
    parser.add_argument("--one-way", action="store_true", help="only FROM -> TO")
    from vnetdiag.cli import hostforms

    hostforms.add_option(parser)


def run(args, out) -> int:
    from vnetdiag.cli import hostforms
    from vnetdiag.collect import Collector
    from vnetdiag.errors import NotFoundError, PrivilegeError
    from vnetdiag.paths import round_trip

    groups = hostforms.by_host([args.source, args.destination], getattr(args, "hosts", None))
    if groups is not None:
        return _on_hosts(args, out)
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
    show(out, results, [f"{r.source} -> {r.destination}" for r in results])
    return 0 if all(r.complete for r in results) else 1


def show(out, results, titles: list[str]) -> None:
    from vnetdiag.report.tables import Col, fitted

    cols = (Col(header="#", justify="right", key=True), Col(header="namespace", key=True),
            Col(header="device", key=True), Col(header="kind", drop=2), Col(header="role", drop=1), Col(header="why"))
    for r, title in zip(results, titles):
        rows = [(str(k), h.netns_name or "", h.name, h.kind or "", h.role, h.how) for k, h in enumerate(r.hops, 1)]
        out.console.print(fitted(cols, rows, title_justify="left",
                                 title=f"{title} ({r.src_address or '?'} -> {r.dst_address})"))
        if r.complete:
            out.console.print(f"reached {r.destination} in {len(r.hops)} hops")
        else:
            out.console.print(f"stopped: {r.stopped}", markup=False)
            if r.flood_candidates:
                out.console.print(f"flood candidates: {', '.join(r.flood_candidates)}", markup=False)


def _on_hosts(args, out) -> int:
    """FROM and TO as HOST:NS: each end's walk on its own host, through its agent.

    On one host the walk goes from FROM to TO (and back); across hosts each
    host sees its part: FROM's host from FROM to where the packet leaves it
    (the tunnel or the wire), TO's host from TO back towards FROM."""
    import dataclasses

    from vnetdiag.fleet.coordinator import Fleet
    from vnetdiag.fleet.diagnose import endpoint, plan
    from vnetdiag.model.fleet import TopologyAnswer
    from vnetdiag.model.plain import from_plain
    from vnetdiag.topology.path import document

    host_a, ep_a, host_b, ep_b, _ = plan(args.source, args.destination, hosts_file=getattr(args, "hosts", None),
                                         via=[args.source.split(":", 1)[0]])
    with Fleet([host_a] if host_a.name == host_b.name else [host_a, host_b], clock=False) as fleet:
        ns_a, addr_a = endpoint(fleet, host_a, ep_a)
        ns_b, addr_b = endpoint(fleet, host_b, ep_b)
        walks = [(host_a, ns_a, addr_b, ns_b)] + ([] if args.one_way else [(host_b, ns_b, addr_a, ns_a)])
        results, titles = [], []
        for host, ns, addr, other in walks:
            # On one host the walk ends at the other namespace; across, where the packet leaves.
            walk = [ns, addr] + ([other] if host_a.name == host_b.name else [])
            answer = from_plain(TopologyAnswer, fleet.call(host.name, "topology", paths=[walk]))
            r = answer.paths[0]
            across = host_a.name != host_b.name
            if across and not r.complete and r.hops:
                # Where this host's part ends, said as that: the rest of the way is on other hosts.
                r = dataclasses.replace(r, stopped=f"leaves {host.name} by {r.hops[-1].name} ({r.stopped})")
            peer = f"{(host_b if host is host_a else host_a).name}:{other}"
            results.append(r)
            titles.append(f"{host.name}:{ns} -> {peer}" + (f" (on {host.name})" if across else ""))
    # Across hosts a walk ends where the packet leaves its host: that is the whole of what it can see.
    ok = all(r.complete or (host_a.name != host_b.name and r.hops) for r in results)
    if out.json_mode:
        doc = document(results)
        doc["paths"] = [p | {"host": w[0].name, "title": t} for p, w, t in zip(doc["paths"], walks, titles)]
        out.document(doc)
        return 0 if ok else 1
    show(out, results, titles)
    return 0 if ok else 1
