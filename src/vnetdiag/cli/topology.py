"""vnetdiag topology: namespaces, interfaces and how they connect."""

from __future__ import annotations

import json
from pathlib import Path

from vnetdiag.errors import BadInputError


def configure(parser, common) -> None:
    parser.add_argument("--format", choices=("tree", "dot", "html"), default="tree",
                        help="tree (default), Graphviz dot, or a self-contained interactive HTML page")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the view to FILE instead of stdout")
    parser.add_argument("--diff", metavar="OLD.json",
                        help="show what appeared, disappeared or moved since a saved --json document")
    parser.add_argument("--netns", action="append", default=[], metavar="NS",
                        help="only this namespace (name, inode or 'host'; HOST:NS on a host); repeatable")
    from vnetdiag.cli import hostforms

    hostforms.add_option(parser)


def load_old(path: str) -> dict:
    from vnetdiag.topology.diff import check

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}", hint="give a file written by --json") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadInputError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})",
                            hint="write one with: vnetdiag topology --json > OLD.json") from None
    return check(doc, path)


def current(netns: list[str]):
    from vnetdiag.cli.counters import namespace_filter
    from vnetdiag.collect import Collector
    from vnetdiag.errors import UsageError
    from vnetdiag.topology import discover

    with Collector(only=namespace_filter(netns), driver_stats=False) as col:
        snap = col.snapshot()
        if netns and not snap.namespaces:
            known = ", ".join(n.label for n in col.pool.namespaces)
            raise UsageError(f"no namespace matches {', '.join(netns)}", hint=f"namespaces: {known}")
        return discover(snap, col.pool)


def run(args, out) -> int:
    from vnetdiag.topology import views

    from vnetdiag.cli import hostforms

    old = load_old(args.diff) if args.diff else None  # check the file before reading the kernel
    groups = hostforms.by_host(args.netns, getattr(args, "hosts", None))
    host = None
    if groups is None:
        topo = current(args.netns)
    else:
        from vnetdiag.model.fleet import TopologyAnswer

        host, _, specs = hostforms.one_host(groups, "topology")
        topo = hostforms.ask(groups, "topology", lambda specs: {"full": True, "netns": specs},
                             TopologyAnswer)[host].topology
        hostforms.check_matched(groups, {host: bool(topo.namespaces)})
    refused = [p.split(":", 1)[0] for p in topo.problems if "needs root" in p]
    for p in topo.problems:
        if "needs root" not in p:
            out.info(f"vnetdiag: {p}")
    if refused:
        out.info(f"vnetdiag: {len(refused)} namespaces need root to read ({', '.join(refused[:5])}"
                 f"{', ...' if len(refused) > 5 else ''}); showing the rest (hint: run with sudo)")
    if old is not None:
        from vnetdiag.topology.diff import diff

        d = diff(old, views.document(topo))
        if out.json_mode:
            out.document(d.document())
            return 0
        if d.empty():
            out.console.print(f"no change since {args.diff}")
        for title, items in (("appeared", d.appeared), ("disappeared", d.disappeared),
                             ("edges added", d.edges_added), ("edges removed", d.edges_removed),
                             ("moved (FDB)", d.moved)):
            if items:
                out.console.print(f"{title}:")
                for item in items:
                    out.console.print(f"  {item}", markup=False)
        return 0
    if out.json_mode:
        doc = views.document(topo) if host is None else hostforms.document({host: views.document(topo)})
        text = json.dumps(doc, indent=2) + "\n"
    elif args.format == "dot":
        text = views.dot(topo)
    elif args.format == "html":
        text = views.html(topo)
    else:
        text = "".join(f"{line}\n" for line in ([f"host {host}"] if host else []) + list(views.tree_lines(topo)))
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise BadInputError(f"cannot write {args.output}: {exc.strerror}") from None
        out.info(f"wrote {args.output}")
    else:
        out.stream.write(text)
        out.stream.flush()
    return 0
