"""Counter snapshots and deltas as result documents and terminal tables.

Pure functions: they take records and return JSON-ready dicts or rich
renderables; the CLI prints them.
"""

from __future__ import annotations

import re
from dataclasses import asdict

from vnetdiag.model.counters import CounterSnapshot, InterfaceCounters
from vnetdiag.model.deltas import SnapshotDelta
from vnetdiag.model.namespaces import inode_label

SCHEMA = "vnetdiag.counters/1"
DELTA_SCHEMA = "vnetdiag.counters-delta/1"

# What the default view calls a problem counter: names that say they count
# drops, errors or refusals. Matching on the kernel's words keeps new counters
# in view without a table of them here.
_BAD = re.compile(r"(drop|err|miss|fifo|over|crc|frame|abort|carrier_err|heartbeat|window|nohandler|"
                  r"collision|fail|timeout|discard|overflow|retrans|prune|collapse|invalid|"
                  r"early_drop|insert_failed|search_restart|squeeze|busy|reset|noroute|backlog)", re.I)


def is_problem_counter(name: str) -> bool:
    return bool(_BAD.search(name))


def snapshot_document(s: CounterSnapshot) -> dict:
    names = {n.inode: n.name for n in s.namespaces}
    return {
        "schema": SCHEMA,
        "taken_unix_s": s.taken_unix_s,
        "duration_ms": round(s.duration_ms, 3),
        "namespaces": [{"inode": n.inode, "name": n.name, "path": n.path, "is_host": n.is_host,
                        "pids": [asdict(h) for h in n.holders]} for n in s.namespaces],
        "interfaces": [_interface(i) for i in s.interfaces],
        "netns_stats": [{"netns_inode": ns.netns_inode, "netns_name": names.get(ns.netns_inode),
                         "snmp": ns.snmp, "snmp6": ns.snmp6, "sockstat": ns.sockstat,
                         "conntrack": asdict(ns.conntrack) if ns.conntrack else None}
                        for ns in s.netns_stats],
        "softnet": [asdict(c) for c in s.softnet],
        "problems": [asdict(p) for p in s.problems],
    }


def _interface(i: InterfaceCounters) -> dict:
    x = i.interface
    return {
        "netns_inode": x.ref.netns_inode, "netns_name": x.netns_name, "ifindex": x.ref.ifindex,
        "id": x.id, "name": x.name, "kind": x.kind, "driver": x.driver, "operstate": x.operstate,
        "stats": i.stats, "driver_stats": i.driver_stats,
        "queues": [asdict(q) for q in i.queues],
        "qdiscs": [asdict(q) for q in i.qdiscs],
    }


def delta_document(d: SnapshotDelta, *, taken_unix_s: float | None = None) -> dict:
    return {
        "schema": DELTA_SCHEMA,
        "taken_unix_s": taken_unix_s,
        "interval_s": round(d.interval_s, 6),
        "interfaces": [asdict(i) for i in d.interfaces if i.status != "present" or i.moved()],
        "namespaces": [asdict(n) for n in d.namespaces
                       if n.status != "present" or n.snmp or n.snmp6 or n.conntrack],
        "softnet": [asdict(c) for c in d.softnet],
        "problems": list(d.problems),
    }


# -- terminal --------------------------------------------------------------

def snapshot_rows(s: CounterSnapshot, *, all_counters: bool = False) -> list[tuple[str, str, str, int]]:
    """(namespace, device or section, counter, value) rows of non-zero counters;
    only problem counters unless ``all_counters``."""
    names = {n.inode: n.label for n in s.namespaces}
    keep = (lambda n, v: v != 0) if all_counters else (lambda n, v: v != 0 and is_problem_counter(n))
    rows: list[tuple[str, str, str, int]] = []
    for i in s.interfaces:
        x = i.interface
        ns = names.get(x.ref.netns_inode) or inode_label(x.ref.netns_inode)
        for k, v in i.stats.items():
            if keep(k, v):
                rows.append((ns, x.name, k, v))
        for k, v in i.driver_stats.items():
            if keep(k, v):
                rows.append((ns, x.name, f"ethtool:{k}", v))
        for q in i.queues:
            for k, v in q.counters.items():
                if keep(k, v):
                    rows.append((ns, x.name, f"ethtool:{q.direction}[{q.queue}].{k}", v))
        for q in i.qdiscs:
            what = f"{'class' if q.is_class else 'qdisc'} {q.kind} {q.handle}"
            for k in ("drops", "overlimits", "requeues", "backlog_bytes", "backlog_packets", "packets", "bytes"):
                v = getattr(q, k)
                if keep(k, v) or (k.startswith("backlog") and v):
                    rows.append((ns, x.name, f"{what} {k}", v))
    for st in s.netns_stats:
        ns = names.get(st.netns_inode) or inode_label(st.netns_inode)
        for section, values in st.snmp.items():
            for k, v in values.items():
                if keep(k, v):
                    rows.append((ns, section, k, v))
        if st.conntrack:
            totals: dict[str, int] = {}
            for row in st.conntrack.per_cpu:
                for k, v in row.items():
                    totals[k] = totals.get(k, 0) + v
            for k, v in totals.items():
                if keep(k, v):
                    rows.append((ns, "conntrack", k, v))
            if st.conntrack.count and st.conntrack.limit and (all_counters or st.conntrack.count > st.conntrack.limit * 0.8):
                rows.append((ns, "conntrack", "count", st.conntrack.count))
    for c in s.softnet:
        for k in ("dropped", "time_squeeze", "processed", "flow_limit_count"):
            v = getattr(c, k)
            if keep(k, v):
                rows.append(("host", f"softnet cpu{c.cpu}", k, v))
    return rows


def delta_rows(d: SnapshotDelta, *, all_counters: bool = False) -> list[tuple[str, str, str, int, float, str]]:
    """(namespace, device, counter, delta, rate/s, note) for what moved."""
    keep = (lambda n: True) if all_counters else is_problem_counter
    rows = []
    for i in d.interfaces:
        ns = i.netns_name
        if i.status in ("appeared", "disappeared"):
            rows.append((ns, i.name, f"<{i.status}>", 0, 0.0, ""))
            continue
        for m in i.stats:
            if keep(m.name):
                rows.append((ns, i.name, m.name, m.delta, m.rate_per_s, m.note))
        for m in i.driver_stats:
            if keep(m.name):
                rows.append((ns, i.name, f"ethtool:{m.name}", m.delta, m.rate_per_s, m.note))
        for direction, queue, m in i.queues:
            if keep(m.name):
                rows.append((ns, i.name, f"ethtool:{direction}[{queue}].{m.name}", m.delta, m.rate_per_s, m.note))
        for q in i.qdiscs:
            for m in q.moves:
                if keep(m.name):
                    rows.append((ns, i.name, f"{'class' if q.is_class else 'qdisc'} {q.kind} {q.handle} {m.name}",
                                 m.delta, m.rate_per_s, m.note))
            if q.backlog_packets:
                rows.append((ns, i.name, f"qdisc {q.kind} {q.handle} backlog_packets (now)", q.backlog_packets, 0.0, ""))
    for n in d.namespaces:
        ns = n.netns_name
        if n.status != "present":
            rows.append((ns, "", f"<namespace {n.status}>", 0, 0.0, ""))
            continue
        for section, m in n.snmp:
            if keep(m.name):
                rows.append((ns, section, m.name, m.delta, m.rate_per_s, m.note))
        for m in n.conntrack:
            if keep(m.name):
                rows.append((ns, "conntrack", m.name, m.delta, m.rate_per_s, m.note))
    for c in d.softnet:
        for m in c.moves:
            if keep(m.name):
                rows.append(("host", f"softnet cpu{c.cpu}", m.name, m.delta, m.rate_per_s, m.note))
    return rows
