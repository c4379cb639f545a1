"""vnetdiag counters: every drop, error and queue counter in every namespace."""

from __future__ import annotations

import fnmatch
import time

from vnetdiag.errors import UsageError
from vnetdiag.model.counters import CounterSnapshot, InterfaceCounters


def configure(parser, common) -> None:
    parser.add_argument("--watch", nargs="?", type=float, const=1.0, default=None, metavar="INTERVAL",
                        help="live view of what moved in each interval (default 1 s)")
    parser.add_argument("--count", type=int, default=0, metavar="N",
                        help="with --watch: stop after N intervals (default: until Ctrl-C)")
    parser.add_argument("--netns", action="append", default=[], metavar="NS",
                        help="only this namespace (name, inode or 'host'); repeatable")
    parser.add_argument("--device", action="append", default=[], metavar="DEV",
                        help="only devices matching this name or glob; repeatable")
    parser.add_argument("--all", action="store_true",
                        help="every non-zero (or moving) counter, not only drops, errors and backlogs")
    from vnetdiag.cli import hostforms

    hostforms.add_option(parser)


def namespace_filter(specs: list[str]):
    from vnetdiag.naming import namespace_filter as named

    return named(specs)


def device_filter(snap: CounterSnapshot, globs: list[str]) -> CounterSnapshot:
    if not globs:
        return snap
    import dataclasses

    def keep(i: InterfaceCounters) -> bool:
        return any(fnmatch.fnmatchcase(i.interface.name, g) for g in globs)
    return dataclasses.replace(snap, interfaces=tuple(i for i in snap.interfaces if keep(i)),
                               netns_stats=(), softnet=())


def run(args, out) -> int:
    from vnetdiag.collect import Collector
    from vnetdiag.report import counters as rep

    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch interval must be positive, not {args.watch}", hint="e.g. --watch 1")
    from vnetdiag.cli import hostforms

    groups = hostforms.by_host(args.netns, getattr(args, "hosts", None))
    if groups is not None:
        return _on_hosts(out, groups, args, rep)
    only = namespace_filter(args.netns)
    with Collector(only=only) as col:
        first = col.snapshot()
        if args.netns and not first.namespaces:
            known = ", ".join(n.label for n in col.pool.namespaces)
            raise UsageError(f"no namespace matches {', '.join(args.netns)}", hint=f"namespaces: {known}")
        if args.watch is None:
            snap = device_filter(first, args.device)
            if out.json_mode:
                out.document(rep.snapshot_document(snap))
                return 0
            _print_snapshot(out, snap, rep, args.all)
            return 0
        try:
            _watch(out, col, first, args, rep)
        except KeyboardInterrupt:
            pass
    return 0


def _on_hosts(out, groups, args, rep) -> int:
    """--netns HOST:NS: one snapshot from each host's agent, shown per host."""
    from vnetdiag.cli import hostforms
    from vnetdiag.model.fleet import HostSnapshot

    if args.watch is not None:
        return _watch_host(out, groups, args, rep)
    answers = hostforms.ask(groups, "snapshot", lambda specs: {"netns": specs, "rules": False}, HostSnapshot)
    hostforms.check_matched(groups, {name: bool(a.snapshot.namespaces) for name, a in answers.items()})
    snaps = {name: device_filter(a.snapshot, args.device) for name, a in answers.items()}
    if out.json_mode:
        out.document(hostforms.document({name: rep.snapshot_document(s) for name, s in snaps.items()}))
        return 0
    for name, snap in snaps.items():
        hostforms.heading(out, name)
        _print_snapshot(out, snap, rep, args.all)
    return 0


def _watch_host(out, groups, args, rep) -> int:
    """--watch of one host's namespaces: the same live view, each snapshot asked of its agent."""
    from vnetdiag.cli import hostforms
    from vnetdiag.fleet.coordinator import Fleet

    name, host, specs = hostforms.one_host(groups, "counters --watch")
    with Fleet([host]) as fleet:  # with its clock offset: the watch ticks on our clock
        source = hostforms.RemoteSnapshots(fleet, name, specs)
        first = source.snapshot()
        hostforms.check_matched(groups, {name: bool(first.namespaces)})
        if not out.json_mode:
            hostforms.heading(out, name)
        try:
            _watch(out, source, first, args, rep)
        except KeyboardInterrupt:
            pass
    return 0


def report_problems(out, problems) -> None:
    """One line per problem; namespaces refused for lack of root as one line."""
    need_root = [p.where for p in problems if "needs root" in p.what]
    for p in problems:
        if "needs root" not in p.what:
            out.info(f"vnetdiag: could not read {p.where}: {p.what}")
    if need_root:
        out.info(f"vnetdiag: {len(need_root)} namespaces need root to read ({', '.join(need_root[:5])}"
                 f"{', ...' if len(need_root) > 5 else ''}); showing the rest (hint: run with sudo)")


def _print_snapshot(out, snap, rep, all_counters: bool) -> None:
    from vnetdiag.report.tables import Col, fitted

    rows = rep.snapshot_rows(snap, all_counters=all_counters)
    report_problems(out, snap.problems)
    title = (f"{len(snap.interfaces)} interfaces in {len(snap.namespaces)} namespaces, "
             f"read in {snap.duration_ms:.1f} ms")
    if not rows:
        out.console.print(f"{title}: no {'non-zero' if all_counters else 'drop, error or backlog'} counters")
        return
    cells, last = [], None
    for ns, dev, name, value in rows:
        shown = (ns, dev) if (ns, dev) != last else ("", "")
        last = (ns, dev)
        cells.append((shown[0], shown[1], name, str(value)))
    cols = (Col(header="namespace", key=True), Col(header="device", key=True), Col(header="counter", key=True),
            Col(header="value", justify="right", key=True))
    out.console.print(fitted(cols, cells, title=title, title_justify="left"))


def _watch(out, col, first, args, rep) -> None:
    from vnetdiag.analyze.deltas import delta

    prev = device_filter(first, args.device)
    interval = args.watch
    n = 0
    # Fixed-rate ticks from the first snapshot, so intervals do not drift.
    next_t = first.taken_monotonic_s + interval

    def step():
        nonlocal next_t, prev, n
        time.sleep(max(0.0, next_t - time.monotonic()))
        next_t += interval
        cur = device_filter(col.snapshot(), args.device)
        d = delta(prev, cur)
        prev = cur
        n += 1
        return cur, d

    def more() -> bool:
        return not args.count or n < args.count

    if out.json_mode:
        import json
        while more():
            cur, d = step()
            out.stream.write(json.dumps(rep.delta_document(d, taken_unix_s=cur.taken_unix_s)) + "\n")
            out.stream.flush()
        return
    if not out.console.is_terminal:  # piped: one table per interval, nothing redrawn
        while more():
            cur, d = step()
            out.console.print(_delta_table(rep, d, args.all, interval, cur))
        return
    from rich.live import Live

    with Live(_delta_table(rep, None, args.all, interval), console=out.console, auto_refresh=False) as live:
        while more():
            cur, d = step()
            live.update(_delta_table(rep, d, args.all, interval, cur), refresh=True)


def _delta_table(rep, d, all_counters, interval, snap=None):
    from rich.table import Table

    from vnetdiag.report.tables import Col, fitted

    if d is None:
        return Table(title=f"waiting {interval:g} s for the first interval ...", title_justify="left")
    rows = rep.delta_rows(d, all_counters=all_counters)
    cols = (Col(header="namespace", key=True), Col(header="device", key=True), Col(header="counter", key=True),
            Col(header="delta", justify="right", key=True), Col(header="per s", justify="right", key=True, drop=2),
            Col(header="note", drop=1))
    return fitted(cols, [(ns, dev, name, str(dv), f"{rate:.1f}", note)
                                  for ns, dev, name, dv, rate, note in rows],
                  title=(f"moved in the last {d.interval_s:.2f} s ({len(rows)} counters; "
                         f"snapshot {snap.duration_ms:.1f} ms) - Ctrl-C to stop"), title_justify="left")
