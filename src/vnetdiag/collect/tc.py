"""Decode qdisc and class messages (RTM_NEWQDISC / RTM_NEWTCLASS) with their
TCA_STATS2 statistics."""

from __future__ import annotations

import struct

from vnetdiag.model.counters import QdiscCounters
from vnetdiag.system import rtnl

TCA_KIND, TCA_STATS2 = 1, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_PKT64 = 1, 3, 8
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1  # also clsact's parent
_BASIC = struct.Struct("=QI")
_QUEUE = struct.Struct("=IIIII")


def handle_str(h: int) -> str:
    """tc's notation: "maj:min" in hex, minor omitted when zero ("8001:")."""
    maj, mnr = h >> 16, h & 0xFFFF
    return f"{maj:x}:{mnr:x}" if mnr else f"{maj:x}:"


def parent_str(p: int, kind: str) -> str:
    if p == TC_H_ROOT:
        return "root"
    if p == TC_H_INGRESS:
        return kind if kind in ("ingress", "clsact") else "ingress"
    maj, mnr = p >> 16, p & 0xFFFF
    return f"{maj:x}:{mnr:x}" if maj else f":{mnr:x}"


def decode(payload: bytes, *, is_class: bool) -> tuple[int, QdiscCounters]:
    """(ifindex, record) from one qdisc or class message."""
    _fam, ifindex, handle, parent, _info = rtnl.TCMSG.unpack_from(payload, 0)
    a = rtnl.attrs(payload, rtnl.TCMSG.size)
    kind = rtnl.string(payload, a[TCA_KIND]) if TCA_KIND in a else "?"
    nbytes = packets = drops = overl = requeues = backlog = qlen = 0
    if TCA_STATS2 in a:
        s = rtnl.attrs(payload, *a[TCA_STATS2])
        if TCA_STATS_BASIC in s:
            nbytes, packets = _BASIC.unpack_from(payload, s[TCA_STATS_BASIC][0])
        if TCA_STATS_PKT64 in s:  # when packets overflow 32 bits the kernel adds this
            packets = struct.unpack_from("=Q", payload, s[TCA_STATS_PKT64][0])[0]
        if TCA_STATS_QUEUE in s:
            qlen, backlog, drops, requeues, overl = _QUEUE.unpack_from(payload, s[TCA_STATS_QUEUE][0])
    return ifindex, QdiscCounters(
        kind=kind, handle=handle_str(handle), parent=parent_str(parent, kind), is_class=is_class,
        bytes=nbytes, packets=packets, drops=drops, overlimits=overl, requeues=requeues,
        backlog_bytes=backlog, backlog_packets=qlen,
    )
