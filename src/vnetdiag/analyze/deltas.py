"""What moved between two counter snapshots: wrap- and reset-aware deltas, rates.

Counter widths: stats64, driver statistics, qdisc bytes and /proc/net/snmp
counters are 64-bit; qdisc packets/drops/overlimits/requeues, softnet_stat and
the per-CPU conntrack statistics are 32-bit in the kernel. A 64-bit counter
that goes down was reset (a wrap would take centuries); a 32-bit counter that
goes down wrapped if the wrapped distance is under half its range, otherwise
it was reset. After a reset the delta is the new value (counted since reset).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vnetdiag.model.counters import CounterSnapshot, InterfaceCounters, NetnsStats, QdiscCounters
from vnetdiag.model.deltas import (
    CounterMove, InterfaceDelta, NetnsDelta, QdiscDelta, SnapshotDelta, SoftnetDelta,
)

# SNMP values that are levels, not counters: a drop in them is not a reset.
SNMP_GAUGES = {("Ip", "Forwarding"), ("Ip", "DefaultTTL"), ("Tcp", "RtoAlgorithm"), ("Tcp", "RtoMin"),
               ("Tcp", "RtoMax"), ("Tcp", "MaxConn"), ("Tcp", "CurrEstab")}
CONNTRACK_GAUGES = {"entries", "chainlength"}
QDISC_COUNTERS_32 = ("packets", "drops", "overlimits", "requeues")


def counter_delta(old: int, new: int, bits: int = 64) -> tuple[int, str]:
    """(delta, note) with note "", "wrapped" or "reset"."""
    if new >= old:
        return new - old, ""
    if bits < 64:
        wrapped = new + (1 << bits) - old
        if wrapped < (1 << (bits - 1)):
            return wrapped, "wrapped"
    return new, "reset"


def _moves(old: Mapping[str, int], new: Mapping[str, int], interval_s: float, bits: int = 64,
           skip: Iterable[str] = ()) -> tuple[CounterMove, ...]:
    out = []
    skipped = set(skip)
    for name, value in new.items():
        if name in skipped or name not in old:
            continue
        d, note = counter_delta(old[name], value, bits)
        if d or note:
            out.append(CounterMove(name=name, delta=d, rate_per_s=d / interval_s if interval_s > 0 else 0.0, note=note))
    return tuple(out)


def _qdisc_key(q: QdiscCounters) -> tuple:
    return (q.is_class, q.handle, q.parent, q.kind)


def _qdisc_deltas(old: Iterable[QdiscCounters], new: Iterable[QdiscCounters], dt: float) -> tuple[QdiscDelta, ...]:
    before = {_qdisc_key(q): q for q in old}
    out = []
    for q in new:
        p = before.get(_qdisc_key(q))
        moves: tuple[CounterMove, ...] = ()
        if p is not None:
            # PKT64 makes packets 64-bit once they pass 2^32; bytes always are.
            pk_bits = 64 if max(p.packets, q.packets) >= 1 << 32 else 32
            moves = _moves({"bytes": p.bytes}, {"bytes": q.bytes}, dt, 64)
            moves += _moves({"packets": p.packets}, {"packets": q.packets}, dt, pk_bits)
            moves += _moves({k: getattr(p, k) for k in QDISC_COUNTERS_32[1:]},
                            {k: getattr(q, k) for k in QDISC_COUNTERS_32[1:]}, dt, 32)
        out.append(QdiscDelta(kind=q.kind, handle=q.handle, parent=q.parent, is_class=q.is_class,
                              moves=moves, backlog_bytes=q.backlog_bytes, backlog_packets=q.backlog_packets))
    return tuple(out)


def _interface_delta(a: InterfaceCounters, b: InterfaceCounters, dt: float) -> InterfaceDelta:
    ia, ib = a.interface, b.interface
    qa = {(q.direction, q.queue): q.counters for q in a.queues}
    queue_moves = []
    for q in b.queues:
        for m in _moves(qa.get((q.direction, q.queue), {}), q.counters, dt):
            queue_moves.append((q.direction, q.queue, m))
    return InterfaceDelta(
        ref=ib.ref, name=ib.name, netns_name=ib.netns_name, kind=ib.kind,
        status="renamed" if ia.name != ib.name else "present",
        old_name=ia.name if ia.name != ib.name else None,
        stats=_moves(a.stats, b.stats, dt), driver_stats=_moves(a.driver_stats, b.driver_stats, dt),
        queues=tuple(queue_moves), qdiscs=_qdisc_deltas(a.qdiscs, b.qdiscs, dt),
    )


def _netns_delta(a: NetnsStats, b: NetnsStats, name: str | None, dt: float) -> NetnsDelta:
    snmp = []
    for section, values in b.snmp.items():
        gauges = [n for (s, n) in SNMP_GAUGES if s == section]
        for m in _moves(a.snmp.get(section, {}), values, dt, skip=gauges):
            snmp.append((section, m))
    ct_moves: tuple[CounterMove, ...] = ()
    if a.conntrack and b.conntrack:
        totals: dict[str, list] = {}
        for ra, rb in zip(a.conntrack.per_cpu, b.conntrack.per_cpu):
            for m in _moves(ra, rb, dt, 32, skip=CONNTRACK_GAUGES):
                t = totals.setdefault(m.name, [0, ""])
                t[0] += m.delta
                t[1] = t[1] or m.note
        ct_moves = tuple(CounterMove(name=k, delta=d, rate_per_s=d / dt if dt > 0 else 0.0, note=note)
                         for k, (d, note) in totals.items())
    return NetnsDelta(
        netns_inode=b.netns_inode, netns_name=name, status="present", snmp=tuple(snmp),
        snmp6=_moves(a.snmp6, b.snmp6, dt), conntrack=ct_moves,
        conntrack_count=b.conntrack.count if b.conntrack else None,
        conntrack_limit=b.conntrack.limit if b.conntrack else None,
    )


def delta(a: CounterSnapshot, b: CounterSnapshot) -> SnapshotDelta:
    """What moved from snapshot ``a`` to the later snapshot ``b``."""
    dt = b.taken_monotonic_s - a.taken_monotonic_s
    problems = []
    if dt <= 0:
        problems.append("snapshots are not in time order: rates are zero")
    ia = {i.interface.ref: i for i in a.interfaces}
    ib = {i.interface.ref: i for i in b.interfaces}
    interfaces = []
    for ref, cur in ib.items():
        prev = ia.get(ref)
        if prev is None:
            x = cur.interface
            interfaces.append(InterfaceDelta(ref=ref, name=x.name, netns_name=x.netns_name, kind=x.kind,
                                             status="appeared"))
        else:
            interfaces.append(_interface_delta(prev, cur, dt))
    for ref, prev in ia.items():
        if ref not in ib:
            x = prev.interface
            interfaces.append(InterfaceDelta(ref=ref, name=x.name, netns_name=x.netns_name, kind=x.kind,
                                             status="disappeared"))
    na = {s.netns_inode: s for s in a.netns_stats}
    names = {n.inode: n.label for n in (*a.namespaces, *b.namespaces)}
    namespaces = []
    for s in b.netns_stats:
        prev = na.get(s.netns_inode)
        if prev is None:
            namespaces.append(NetnsDelta(netns_inode=s.netns_inode, netns_name=names.get(s.netns_inode),
                                         status="appeared"))
        else:
            namespaces.append(_netns_delta(prev, s, names.get(s.netns_inode), dt))
    nb = {s.netns_inode for s in b.netns_stats}
    for s in a.netns_stats:
        if s.netns_inode not in nb:
            namespaces.append(NetnsDelta(netns_inode=s.netns_inode, netns_name=names.get(s.netns_inode),
                                         status="disappeared"))
    sa = {c.cpu: c for c in a.softnet}
    softnet = []
    for c in b.softnet:
        p = sa.get(c.cpu)
        if p is None:
            continue
        fields = ("processed", "dropped", "time_squeeze", "received_rps", "flow_limit_count")
        moves = _moves({f: getattr(p, f) for f in fields}, {f: getattr(c, f) for f in fields}, dt, 32)
        if moves:
            softnet.append(SoftnetDelta(cpu=c.cpu, moves=moves))
    return SnapshotDelta(interval_s=dt, interfaces=tuple(interfaces), namespaces=tuple(namespaces),
                         softnet=tuple(softnet), problems=tuple(problems))
