"""Records of packet-capture analysis (``vnetdiag pcap``).

Times from the capture are seconds since the first packet (``*_s``) unless a
field says ``epoch``; delays are milliseconds (``*_ms``) or microseconds (``*_us``).
Endpoints are strings "addr:port" (IPv6 as "[addr]:port"), or "addr" for
protocols without ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SCHEMA = "vnetdiag.pcap/1"

Proto = Literal["tcp", "udp", "icmp", "icmpv6", "ip"]


@dataclass(frozen=True, kw_only=True)
class CaptureInfo:
    """What the reader saw in the file."""

    path: str
    format: Literal["pcap", "pcapng"]
    compressed: bool
    """Gzip-compressed file, read directly."""
    packets: int
    """Packet records read (what tshark calls frames)."""
    bytes_on_wire: int
    link_types: tuple[int, ...]
    """LINKTYPE_* numbers of the interfaces (one per pcapng interface)."""
    timestamp_resolution_ns: tuple[float, ...]
    """Per interface: 1000 for microsecond pcap, 1 for nanosecond."""
    first_epoch_s: float | None
    duration_s: float
    skipped: int
    """Records that could not be read at all (truncated/corrupt): not in packets."""
    undecoded: int
    """Packets read but not analysed: unknown link type, non-IP, truncated headers."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Tunnel:
    """The outer endpoints of a vxlan-encapsulated conversation."""

    outer_a: str
    outer_b: str
    vni: int


@dataclass(frozen=True, kw_only=True)
class Conversation:
    """One conversation, counted like tshark's ``-z conv,tcp`` / ``conv,udp``.

    ``a`` is the source of the conversation's first packet (the client for TCP
    when the SYN was captured)."""

    proto: str
    a: str
    b: str
    packets_ab: int
    bytes_ab: int
    """Frame bytes (on the wire, outer headers included) from a to b."""
    packets_ba: int
    bytes_ba: int
    start_s: float
    duration_s: float
    retransmissions: int = 0
    stream: int | None = None
    """tshark's tcp.stream index for TCP (port reuse starts a new stream)."""
    tunnel: Tunnel | None = None
    """Set when the conversation was carried in vxlan (the inner flow)."""
    vxlan_outer: bool = False
    """This UDP conversation is itself a vxlan tunnel carrying other flows."""


@dataclass(frozen=True, kw_only=True)
class Retransmission:
    """One retransmitted TCP segment (Wireshark's tcp.analysis.retransmission)."""

    flow: str
    """"a -> b" of the sender, as in the conversation list."""
    stream: int
    frame: int
    """1-based frame number in the file, as in Wireshark."""
    time_s: float
    seq: int
    """Relative sequence number (0 = the SYN)."""
    length_bytes: int
    kind: Literal["retransmission", "fast", "spurious"]
    delay_ms: float | None
    """Time since the original transmission of this sequence number (None when
    the original is not in the capture)."""
    gap_ms: float | None
    """Time since the previous transmission of it (the timer that fired)."""
    attempt: int
    """1 for the first retransmission of this sequence number, 2 for the next..."""
    syn: bool
    signature: str
    """See model/signatures.py: min-rto, rto-x2, syn-retrans-1, tlp, fast-retrans, ..."""
    original_frame: int | None = None


@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    count: int
    p50_us: float
    p99_us: float
    max_us: float


@dataclass(frozen=True, kw_only=True)
class TcpFlow:
    """TCP analysis of one stream."""

    stream: int
    a: str
    b: str
    packets: int
    retransmissions: int
    fast_retransmissions: int
    spurious_retransmissions: int
    out_of_order: int
    dup_acks: int
    zero_windows: int
    resets: int
    syn_retransmissions: int
    handshake_rtt_us: float | None
    """SYN to the ACK that completes the handshake, seen from the capture point."""
    request_response: LatencySummary | None
    """Delay from the last data segment of a request (a->b) to the first of its
    response (b->a), for request/response traffic."""
    signatures: dict[str, int] = field(default_factory=dict)
    """Retransmissions per signature."""


@dataclass(frozen=True, kw_only=True)
class PcapReport:
    capture: CaptureInfo
    conversations: tuple[Conversation, ...]
    flows: tuple[TcpFlow, ...]
    retransmissions: tuple[Retransmission, ...]
    signatures: dict[str, int]
    """Retransmissions per signature over the whole capture."""

    def document(self) -> dict:
        """The ``vnetdiag.pcap/1`` JSON document."""
        return {
            "schema": SCHEMA,
            "packets": self.capture.packets,
            "capture": self.capture,
            "conversations": list(self.conversations),
            "flows": list(self.flows),
            "retransmissions": list(self.retransmissions),
            "signatures": self.signatures,
        }
