"""vnetdiag inventory: every interface in every namespace and how it is built."""

from __future__ import annotations


def configure(parser, common) -> None:
    parser.add_argument("--netns", action="append", default=[], metavar="NS",
                        help="only this namespace (name, inode or 'host'); repeatable")


def run(args, out) -> int:
    from vnetdiag.cli.counters import namespace_filter
    from vnetdiag.collect import Collector
    from vnetdiag.errors import UsageError
    from vnetdiag.report import inventory as rep

    with Collector(only=namespace_filter(args.netns), driver_stats=False) as col:
        snap = col.snapshot()
        if args.netns and not snap.namespaces:
            known = ", ".join(n.label for n in col.pool.namespaces)
            raise UsageError(f"no namespace matches {', '.join(args.netns)}", hint=f"namespaces: {known}")
    if out.json_mode:
        out.document(rep.document(snap))
        return 0
    from vnetdiag.cli.counters import report_problems

    report_problems(out, snap.problems)
    from rich.table import Table

    rows = rep.rows(snap)
    table = Table(title=f"{len(rows)} interfaces in {len(snap.namespaces)} namespaces", title_justify="left")
    cols = ("namespace", "ifindex", "name", "kind", "driver", "mac", "mtu", "qlen", "state", "master",
            "link", "queues", "offloads", "details")
    for c in cols:
        table.add_column(c if c != "queues" else "rxq/txq", justify="right" if c in ("ifindex", "mtu", "qlen") else "left")
    last = None
    for r in rows:
        r = dict(r)
        if r["namespace"] == last:
            r["namespace"] = ""
        else:
            last = r["namespace"]
        table.add_row(*(r[c] for c in cols))
    if not out.console.is_terminal:  # piped: keep each row on one line for grep, not 80 columns
        out.console.width = 250
    out.console.print(table)
    return 0
