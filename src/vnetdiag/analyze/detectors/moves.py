"""The few counter moves detectors need, computed from two snapshots.

A full ``analyze.deltas.delta`` moves every counter of every namespace (the
SNMP tables alone are ~300 counters per namespace); the detectors look at a
dozen per device, so they take the moves they need here, with the same
wrap/reset rule (``counter_delta``) and the same counter widths.
"""

from __future__ import annotations

from collections.abc import Mapping

from vnetdiag.analyze.deltas import counter_delta
from vnetdiag.model.counters import CounterSnapshot, InterfaceCounters, QdiscCounters
from vnetdiag.model.namespaces import IfRef


def interval_s(prev: CounterSnapshot, cur: CounterSnapshot) -> float:
    return cur.taken_monotonic_s - prev.taken_monotonic_s


def by_ref(snap: CounterSnapshot) -> dict[IfRef, InterfaceCounters]:
    return {i.interface.ref: i for i in snap.interfaces}


def move(old: Mapping[str, int], new: Mapping[str, int], name: str, bits: int = 64) -> int:
    """Delta of one counter; 0 when either side lacks it."""
    a, b = old.get(name), new.get(name)
    if a is None or b is None:
        return 0
    return counter_delta(a, b, bits)[0]


def _qkey(q: QdiscCounters) -> tuple:
    return (q.is_class, q.handle, q.parent, q.kind)


def qdisc_pairs(old: InterfaceCounters, new: InterfaceCounters, *, roots_only: bool = False):
    """(previous qdisc or None, current qdisc) for the device's qdiscs (no classes)."""
    before = {_qkey(q): q for q in old.qdiscs}
    for q in new.qdiscs:
        if q.is_class or (roots_only and q.parent != "root"):
            continue
        yield before.get(_qkey(q)), q


def qdisc_move(old: QdiscCounters | None, new: QdiscCounters, name: str) -> int:
    """packets/drops of a qdisc: 32-bit in gnet_stats_queue/basic (packets become
    64-bit once past 2^32, as in analyze/deltas.py)."""
    if old is None:
        return 0
    a, b = getattr(old, name), getattr(new, name)
    bits = 64 if name == "bytes" or (name == "packets" and max(a, b) >= 1 << 32) else 32
    return counter_delta(a, b, bits)[0]
