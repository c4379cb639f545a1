"""What moved between two counter snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vnetdiag.model.namespaces import IfRef


@dataclass(frozen=True, kw_only=True, slots=True)
class CounterMove:
    """One counter's change over the interval."""

    name: str
    delta: int
    rate_per_s: float
    note: Literal["", "wrapped", "reset"] = ""
    """"wrapped": the counter passed its maximum (32 or 64 bits) and the delta
    accounts for it; "reset": it went backwards implausibly for a wrap (device
    re-created, stats cleared): the delta is the new value (counted since reset)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QdiscDelta:
    kind: str
    handle: str
    parent: str
    is_class: bool
    moves: tuple[CounterMove, ...]
    backlog_bytes: int
    """The gauge at the end of the interval (not a delta)."""
    backlog_packets: int


@dataclass(frozen=True, kw_only=True, slots=True)
class InterfaceDelta:
    ref: IfRef
    name: str
    netns_name: str | None
    kind: str | None
    status: Literal["present", "appeared", "disappeared", "renamed"]
    """"appeared"/"disappeared": only in the later/earlier snapshot (no moves);
    "renamed": same identity, new name (moves are computed)."""
    stats: tuple[CounterMove, ...] = ()
    driver_stats: tuple[CounterMove, ...] = ()
    queues: tuple[tuple[str, int, CounterMove], ...] = ()
    """(direction, queue, move)."""
    qdiscs: tuple[QdiscDelta, ...] = ()
    old_name: str | None = None

    def moved(self) -> bool:
        return bool(self.stats or self.driver_stats or self.queues or any(q.moves for q in self.qdiscs))


@dataclass(frozen=True, kw_only=True, slots=True)
class NetnsDelta:
    netns_inode: int
    netns_name: str | None
    status: Literal["present", "appeared", "disappeared"]
    snmp: tuple[tuple[str, CounterMove], ...] = ()
    """(section, move) for SNMP/netstat counters that moved."""
    snmp6: tuple[CounterMove, ...] = ()
    conntrack: tuple[CounterMove, ...] = ()
    """Per-CPU conntrack statistics summed over CPUs."""
    conntrack_count: int | None = None
    conntrack_limit: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftnetDelta:
    cpu: int
    moves: tuple[CounterMove, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotDelta:
    interval_s: float
    interfaces: tuple[InterfaceDelta, ...]
    namespaces: tuple[NetnsDelta, ...]
    softnet: tuple[SoftnetDelta, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)
