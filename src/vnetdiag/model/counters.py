"""Counter samples: per interface, per qdisc/class, per namespace, per CPU.

Counter names are the kernel's own: stats64 fields as in struct
rtnl_link_stats64 (rx_missed_errors, tx_heartbeat_errors, rx_nohandler, ...),
driver statistics as ``ethtool -S`` names them, SNMP counters as in
/proc/net/snmp and /proc/net/netstat (section -> name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import Namespace


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueCounters:
    """Driver statistics of one hardware/virtual queue (from ``ethtool -S``
    names such as rx_queue_0_xdp_packets or rx0_drops: the queue number becomes
    this label instead of being folded into the name)."""

    direction: str
    """"rx" or "tx"."""
    queue: int
    counters: dict[str, int]


@dataclass(frozen=True, kw_only=True, slots=True)
class QdiscCounters:
    """A qdisc or a class with its statistics (TCA_STATS2)."""

    kind: str
    handle: str
    """"maj:min" in hex as tc prints it, e.g. "8001:" or "1:10"."""
    parent: str
    """"root", "ingress", "clsact" or "maj:min"."""
    is_class: bool
    bytes: int
    packets: int
    drops: int
    overlimits: int
    requeues: int
    backlog_bytes: int
    backlog_packets: int
    """Packets queued now (gnet_stats_queue.qlen, tc's "backlog ...p")."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InterfaceCounters:
    interface: Interface
    stats: dict[str, int]
    """Every field of IFLA_STATS64 by its struct rtnl_link_stats64 name."""
    driver_stats: dict[str, int] = field(default_factory=dict)
    """``ethtool -S`` counters that are not per queue."""
    queues: tuple[QueueCounters, ...] = ()
    qdiscs: tuple[QdiscCounters, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ConntrackStats:
    count: int | None
    """nf_conntrack_count in this namespace."""
    limit: int | None
    """nf_conntrack_max (the table limit; global in current kernels)."""
    per_cpu: tuple[dict[str, int], ...] = ()
    """/proc/net/stat/nf_conntrack rows (found, invalid, insert_failed, drop,
    early_drop, search_restart, ...), one per CPU, names from its header line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NetnsStats:
    netns_inode: int
    snmp: dict[str, dict[str, int]]
    """/proc/net/snmp and /proc/net/netstat merged: section (Ip, Icmp, Tcp, Udp,
    TcpExt, IpExt, MPTcpExt, ...) -> counter -> value."""
    snmp6: dict[str, int]
    sockstat: dict[str, dict[str, int]]
    """/proc/net/sockstat and sockstat6: protocol (TCP, UDP, ...) -> field (inuse, orphan, tw, alloc, mem)."""
    conntrack: ConntrackStats | None
    """None when nf_conntrack is not loaded."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftnetCpu:
    """One line of /proc/net/softnet_stat (hex columns named here by their
    meaning in net/core/net-procfs.c)."""

    cpu: int
    processed: int
    dropped: int
    """Packets dropped because the backlog queue was full (netdev_max_backlog)."""
    time_squeeze: int
    """NET_RX softirq ran out of budget or time with work left."""
    received_rps: int
    flow_limit_count: int
    backlog_len: int | None
    """Packets in this CPU's backlog now (a gauge; newer kernels)."""
    extra: dict[str, int] = field(default_factory=dict)
    """Columns this version does not name, as col_<index> (0-based)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """Something the snapshot could not read; the rest of it is still valid."""

    where: str
    """Namespace label, or "ns/device"."""
    what: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CounterSnapshot:
    taken_monotonic_s: float
    """CLOCK_MONOTONIC seconds at the start of the snapshot (for rates)."""
    taken_unix_s: float
    duration_ms: float
    """How long the snapshot took to read."""
    namespaces: tuple[Namespace, ...]
    interfaces: tuple[InterfaceCounters, ...]
    netns_stats: tuple[NetnsStats, ...]
    softnet: tuple[SoftnetCpu, ...]
    problems: tuple[Problem, ...] = ()

    def namespace(self, inode: int) -> Namespace | None:
        for ns in self.namespaces:
            if ns.inode == inode:
                return ns
        return None
