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
    out.console.print(rep.table(rep.rows(snap),
                                title=f"{len(snap.interfaces)} interfaces in {len(snap.namespaces)} namespaces"))
    return 0
