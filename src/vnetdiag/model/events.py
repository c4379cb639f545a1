"""Kernel trace events, one record type per kind of event.

Timestamps are CLOCK_MONOTONIC nanoseconds (the tracer sets the instance's
trace clock to ``mono``), so they line up with the probe's clock. ``device`` is
the interface name the kernel put in the event: trace events carry no
namespace, which the analyses add from the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    ts_ns: int
    """CLOCK_MONOTONIC nanoseconds."""
    cpu: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SkbEvent(TraceEvent):
    skbaddr: int
    """Kernel address of the sk_buff: the key that joins the events of one packet."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiveEvent(SkbEvent):
    """net:netif_receive_skb: the packet entered the stack of ``device``."""

    device: str
    len_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueEvent(SkbEvent):
    """net:net_dev_queue: the packet was handed to ``device`` for transmit (before its qdisc)."""

    device: str
    len_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class XmitEvent(SkbEvent):
    """net:net_dev_xmit: the driver of ``device`` returned from transmitting the packet."""

    device: str
    len_bytes: int
    rc: int
    """Driver return code: 0 is NETDEV_TX_OK."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GroEvent(SkbEvent):
    """net:napi_gro_receive_entry: one received frame offered to GRO on ``device``."""

    device: str
    len_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumeEvent(SkbEvent):
    """skb:consume_skb: the packet was freed normally (delivered or done with)."""

    location: str
    """Kernel function (function+offset) that freed it, from /proc/kallsyms."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliverEvent(SkbEvent):
    """skb:skb_copy_datagram_iovec: the packet's data was copied to a reading socket.

    The packet reached its destination; the skb may then be freed where no
    tracepoint fires (a UDP socket read), so this ends its path."""

    len_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DropEvent(SkbEvent):
    """skb:kfree_skb: the packet was dropped."""

    reason: str
    """Drop reason name from the running kernel's skb:kfree_skb format file."""
    location: str
    """Kernel function+offset that dropped it."""
    protocol: int
    """Ethertype of the packet (host order), e.g. 0x800 for IPv4."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetransmitEvent(TraceEvent):
    """tcp:tcp_retransmit_skb or tcp:tcp_retransmit_synack."""

    saddr: str
    sport: int
    daddr: str
    dport: int
    synack: bool
    """True for a retransmitted SYN-ACK (tcp_retransmit_synack)."""
    state: int
    """TCP state number of the socket (0 for SYN-ACKs, which have no full socket yet)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FdbEvent(TraceEvent):
    """bridge:br_fdb_add / br_fdb_update / fdb_delete."""

    kind: Literal["add", "update", "delete"]
    bridge: str
    """Bridge device name ('' for br_fdb_add, which only names the port)."""
    device: str
    """Port the address was learned on or removed from."""
    mac: str
    vid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class XmitTimeoutEvent(TraceEvent):
    """net:net_dev_xmit_timeout: the TX watchdog fired on a stalled queue."""

    device: str
    driver: str
    queue: int


@dataclass(frozen=True, kw_only=True, slots=True)
class NapiPollEvent(TraceEvent):
    """napi:napi_poll (LTTng: napi_poll): the driver of ``device`` was polled for received frames."""

    device: str
    napi: int
    """Kernel address of the napi_struct polled."""
    work: int | None = None
    """Frames the poll processed; None when the event has no such field (older kernels)."""
    budget: int | None = None


SKB_KINDS: tuple[str, ...] = ("rx", "queue", "xmit", "gro", "consume", "drop", "deliver")
"""Kind codes of skb events in columnar batches: the code is the index here."""

EVENT_TYPES: tuple[type[TraceEvent], ...] = (
    ReceiveEvent, QueueEvent, XmitEvent, GroEvent, ConsumeEvent, DeliverEvent, DropEvent,
    RetransmitEvent, FdbEvent, XmitTimeoutEvent, NapiPollEvent,
)
