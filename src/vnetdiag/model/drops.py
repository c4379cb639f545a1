"""Per-packet kernel drop records read by the eBPF backend, and its counts.

Unlike ``events.DropEvent`` (tracefs: reason and location only), these are
read from the sk_buff itself when ``skb:kfree_skb`` fires: the namespace is
the inode of ``skb->dev``'s netns, the interface is (inode, ifindex), the flow
comes from the packet's own headers. Timestamps are CLOCK_MONOTONIC
nanoseconds (bpftrace's ``nsecs`` is bpf_ktime_get_ns), the probe's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Backend = Literal["ebpf", "tracefs"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Flow:
    """One packet's network and transport header fields."""

    ip_version: Literal[4, 6]
    src: str
    dst: str
    proto: int
    """IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6; the last header after IPv6 extension headers)."""
    sport: int = 0
    """0 when the protocol has no ports."""
    dport: int = 0
    tcp_flags: int = 0
    """The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10); 0 for other protocols."""
    tcp_seq: int = 0

    @property
    def five_tuple(self) -> tuple[int, str, int, str, int]:
        return (self.proto, self.src, self.sport, self.dst, self.dport)


@dataclass(frozen=True, kw_only=True, slots=True)
class RingOccupancy:
    """A tap/macvtap queue's ptr_ring at the instant a FULL_RING drop happened."""

    queue_index: int
    producer: int
    """Index the producer writes next."""
    consumer_head: int
    """Index the reader consumes next."""
    consumer_tail: int
    """Start of the consumed entries the reader has not zeroed yet (batched)."""
    size_entries: int
    slot_busy: bool
    """The producer's slot still held a packet: the ring was really full."""

    @property
    def occupied_entries(self) -> int:
        if self.size_entries <= 0:
            return 0
        if self.slot_busy and self.producer == self.consumer_head:
            return self.size_entries
        return (self.producer - self.consumer_head) % self.size_entries


@dataclass(frozen=True, kw_only=True, slots=True)
class PacketDrop:
    """One dropped packet, as the kernel had it when kfree_skb fired."""

    ts_ns: int
    """CLOCK_MONOTONIC nanoseconds."""
    cpu: int
    netns_inode: int
    """Namespace of skb->dev (or of the socket when the skb had no device); 0 if neither."""
    ifindex: int
    """skb->dev's ifindex in that namespace; 0 without a device."""
    device: str
    """skb->dev's name when it dropped (a label; the identity is (netns_inode, ifindex))."""
    input_ifindex: int
    """skb->skb_iif: the interface the packet was received on (0 for locally generated ones)."""
    reason: str
    """Name from the running kernel's enum skb_drop_reason."""
    location: str
    """Kernel function+offset that dropped it (/proc/kallsyms)."""
    ethertype: int
    """skb->protocol, host order (0x800 IPv4, 0x86dd IPv6)."""
    outer: Flow | None = None
    """The packet's IP header and L4 ports; None for non-IP (ARP, ...) or no network header."""
    inner: Flow | None = None
    """For a VXLAN packet (UDP to a vxlan port): the encapsulated frame's flow."""
    ring: RingOccupancy | None = None
    """For a FULL_RING drop at a macvtap/tap queue: the ring's state."""
    matched: bool = True
    """True when the packet matched the caller's filter; False for a sample of the rest."""
    head: bytes = b""
    """The packet's first bytes from ``head_from`` on; empty unless asked for (drops --pcapng)."""
    head_from: Literal["", "mac", "network"] = ""
    """Where ``head`` starts: the Ethernet header, or the IP header when the skb had no MAC header."""
    wire_len_bytes: int = 0
    """The packet's whole length from ``head_from`` on (``head`` holds at most the first bytes of it)."""

    def matches_tuple(self, five: tuple[int, str, int, str, int]) -> bool:
        return any(f is not None and f.five_tuple == five for f in (self.outer, self.inner))


@dataclass(frozen=True, kw_only=True, slots=True)
class DropTally:
    """Drops counted in the kernel per (namespace, interface, reason, location)."""

    netns_inode: int
    ifindex: int
    reason: str
    location: str
    """Kernel function (no offset): the counts group by function like the tracefs backend's."""
    count: int
    device: str = ""
    """Interface name, a label ('' when there was no device or it is gone)."""
    netns: str | None = None
    """Namespace label (an `ip netns` name, "host"), None when unnamed or gone."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordLoss:
    """What the per-packet stream did not deliver."""

    lost: int = 0
    """Records the kernel could not hand to bpftrace (perf buffer full)."""
    suppressed: int = 0
    """Drops not streamed as records: outside the filter and beyond the sample, or past the record cap."""
    missed: int | None = 0
    """Drops the program never ran for, neither counted nor streamed: the kernel skips a tracing
    program while another BPF program runs on that CPU and counts it (recursion_misses). A floor:
    some skips go uncounted, but a tracer that was skipped at all says so. None: not known."""

    @property
    def complete(self) -> bool:
        """Every drop counted and every record delivered (as far as the kernel can tell)."""
        return self.lost == 0 and not self.missed


@dataclass(frozen=True, kw_only=True, slots=True)
class DropTraceResult:
    """One drop trace window, whichever backend ran it."""

    backend: Backend
    duration_s: float
    tallies: tuple[DropTally, ...] = ()
    """eBPF: kernel-side counts. Empty for tracefs (see ``analysis``)."""
    packets: tuple[PacketDrop, ...] = ()
    """eBPF: per-packet records (filtered ones, then the sample)."""
    loss: RecordLoss = field(default_factory=RecordLoss)
    filter: str = ""
    note: str = ""
    """Why this backend was chosen (e.g. the fallback's reason)."""
    analysis: object | None = None
    """tracefs: the TraceAnalysis (model.tracing) that backend produced."""
