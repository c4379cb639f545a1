"""Results of the tracing analyses: drops, packet paths, rates, completeness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vnetdiag.model.events import DropEvent, FdbEvent


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRef:
    """One interface as the device map knows it (from `ip -d link` in each namespace)."""

    netns: str
    """Namespace name ('' for the host namespace of PID 1)."""
    name: str
    ifindex: int
    kind: str
    """Link kind from the kernel (veth, bridge, vxlan, macvtap, tun, ...); '' for none."""
    master: str
    """Name of the master device in the same namespace ('' for none)."""
    peer_netns: str | None
    """For a veth: the namespace of its peer (None when unknown or not a veth)."""
    peer_name: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Hop:
    """One device a packet crossed."""

    device: str
    netns: str | None
    """None when the name exists in several namespaces and the path did not tell which."""
    kind: Literal["rx", "queue", "xmit", "gro"]
    ts_ns: int
    len_bytes: int = 0
    """Length the event reported (for rx and queue: without the link-layer header on some devices)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PacketPath:
    """The devices one sk_buff crossed, in order, and how it ended."""

    skbaddr: int
    hops: tuple[Hop, ...]
    end: Literal["consumed", "delivered", "dropped", "untraced", "aged"]
    """'delivered': its data was copied to a reading socket; 'untraced': the address reappeared on a device it had already entered, so
    the skb was freed where no tracepoint fires (e.g. a UDP socket read) and
    reused; 'aged': no free event came within the ageing window (or before the
    trace ended)."""
    end_ts_ns: int
    drop: DropEvent | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DropCount:
    netns: str | None
    """None when the device is unknown or its name is ambiguous (see ``ambiguous``)."""
    device: str | None
    """Last device the packet was seen on before the drop; None if it never reached one."""
    reason: str
    location: str
    """Kernel function that dropped the packet."""
    count: int
    rate_per_s: float
    ambiguous: tuple[str, ...] = ()
    """Namespaces that all have a device of this name, when the path could not decide."""
    times_ns: tuple[int, ...] = ()
    """CLOCK_MONOTONIC times of the drops (the trace clock is "mono"), the first
    ``MAX_DROP_TIMES`` of them: enough to line drops up with latency tails."""


MAX_DROP_TIMES = 10_000


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRate:
    device: str
    netns: str | None
    rx_packets_per_s: float
    rx_bytes_per_s: float
    tx_packets_per_s: float
    tx_bytes_per_s: float
    gro_frames: int
    """Frames offered to GRO (napi_gro_receive_entry) on this device."""
    gro_share: float | None
    """Share of GRO input frames that were merged into another skb (0..1), None without GRO events."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HopLatency:
    from_device: str
    to_device: str
    count: int
    p50_us: float
    p99_us: float
    max_us: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PathSummary:
    """A device sequence many packets followed, with per-hop latencies."""

    devices: tuple[str, ...]
    netns: tuple[str | None, ...]
    count: int
    hops: tuple[HopLatency, ...]
    end: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RetransmitCount:
    saddr: str
    sport: int
    daddr: str
    dport: int
    count: int
    synack_count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FdbMove:
    """A MAC address learned on one bridge port and later on another."""

    bridge: str
    mac: str
    vid: int
    from_device: str
    to_device: str
    ts_ns: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Completeness:
    events_read: int
    events_lost: int
    """Events the kernel could not store or overwrote (per-CPU stats plus page flags)."""
    lost_by_cpu: dict[int, int] = field(default_factory=dict)
    missing_events: tuple[str, ...] = ()
    """Tracepoints asked for that this kernel does not have."""

    @property
    def complete(self) -> bool:
        return self.events_lost == 0

    @property
    def lost_share(self) -> float:
        total = self.events_read + self.events_lost
        return self.events_lost / total if total else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceAnalysis:
    """Everything the analyses found in one trace window."""

    duration_s: float
    completeness: Completeness
    drops: tuple[DropCount, ...]
    devices: tuple[DeviceRate, ...] = ()
    paths: tuple[PathSummary, ...] = ()
    retransmits: tuple[RetransmitCount, ...] = ()
    fdb_moves: tuple[FdbMove, ...] = ()
    fdb_events: tuple[FdbEvent, ...] = ()
    paths_aged: int = 0
    """Tracked packets dropped from memory without a free event (bounded memory)."""
