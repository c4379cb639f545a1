"""Decode link, IP and TCP/UDP headers of a whole batch at once (numpy gathers).

Each header field is one gather over all packets of the batch, at a per-packet
offset (the IP header length and the link type vary per packet). A packet whose
headers are not all inside its captured bytes is marked undecoded, never read
past: the batch buffer is padded with zeros and every read is checked against
the packet's end.

vxlan (UDP port 4789) is decapsulated once: the inner Ethernet frame is decoded
like any other and the outer addresses, ports and VNI are kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vnetdiag.collect.pcap import Batch

VXLAN_PORT = 4789
ETH, RAW, SLL, SLL2, IPV4, IPV6 = 1, 101, 113, 276, 228, 229
SUPPORTED_LINKTYPES = (ETH, RAW, SLL, SLL2, IPV4, IPV6)
_V4MAPPED = np.uint64(0xFFFF << 32)


class _Views:
    """Big-endian views at every byte offset of a batch buffer."""

    def __init__(self, buf: np.ndarray) -> None:
        n = len(buf)
        self.u8 = buf
        self.b16 = np.ndarray(shape=(n - 1,), dtype=">u2", buffer=buf, strides=(1,))
        self.b32 = np.ndarray(shape=(n - 3,), dtype=">u4", buffer=buf, strides=(1,))
        self.b64 = np.ndarray(shape=(n - 7,), dtype=">u8", buffer=buf, strides=(1,))
        self.last = n - 8  # highest offset any view may be read at

    def at(self, off: np.ndarray) -> np.ndarray:
        """Offsets (never negative) capped to the buffer; reads past a packet's end
        are discarded by the callers' length masks."""
        return np.minimum(off, self.last)


@dataclass(frozen=True, kw_only=True)
class L4:
    """Addresses and ports of the (inner) IP packet of every packet of a batch.

    Addresses are 128 bits as (hi, lo) uint64; IPv4 is IPv4-mapped (::ffff:a.b.c.d)."""

    ok: np.ndarray
    """An IP packet whose header was decoded."""
    proto: np.ndarray
    """IP protocol number; -1 where not ok; 0x100 | proto for fragments and bogus L4."""
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    win: np.ndarray
    seglen: np.ndarray
    """TCP payload bytes (from the IP length, like Wireshark, not the caplen)."""


@dataclass(frozen=True, kw_only=True)
class Decoded:
    frame: np.ndarray
    ts_ns: np.ndarray
    wirelen: np.ndarray
    inner: L4
    """The flow analysed: the inner packet for vxlan, else the packet itself."""
    vxlan: np.ndarray
    """bool: the packet was vxlan-encapsulated; ``outer`` then holds the tunnel."""
    outer: L4
    vni: np.ndarray
    unknown_linktypes: dict[int, int]


def _l3(v: _Views, off: np.ndarray, end: np.ndarray, lt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ethertype, offset of the IP header) per packet; ethertype 0 if unknown."""
    etype = np.zeros(len(off), dtype=np.int64)
    l3 = off.copy()
    eth = lt == ETH
    if eth.any():
        e = v.b16[v.at(off + 12)].astype(np.int64)
        x = off + 14
        for _ in range(2):  # up to two 802.1Q / 802.1ad tags
            tag = (e == 0x8100) | (e == 0x88A8)
            e = np.where(tag, v.b16[v.at(x + 2)], e)
            x = np.where(tag, x + 4, x)
        etype = np.where(eth, e, etype)
        l3 = np.where(eth, x, l3)
    sll = lt == SLL
    if sll.any():
        etype = np.where(sll, v.b16[v.at(off + 14)], etype)
        l3 = np.where(sll, off + 16, l3)
    sll2 = lt == SLL2
    if sll2.any():
        etype = np.where(sll2, v.b16[v.at(off)], etype)
        l3 = np.where(sll2, off + 20, l3)
    raw = (lt == RAW) | (lt == IPV4) | (lt == IPV6)
    if raw.any():
        ver = v.u8[v.at(off)] >> 4
        etype = np.where(raw, np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0)), etype)
    etype = np.where(l3 <= end, etype, 0)
    return etype, l3


def _ip(v: _Views, etype: np.ndarray, l3: np.ndarray, end: np.ndarray) -> L4:
    n = len(l3)
    vh = v.u8[v.at(l3)]
    v4 = (etype == 0x0800) & (l3 + 20 <= end) & ((vh >> 4) == 4)
    v6 = (etype == 0x86DD) & (l3 + 40 <= end) & ((vh >> 4) == 6)
    ihl = (vh & 15).astype(np.int64) * 4
    totlen = v.b16[v.at(l3 + 2)].astype(np.int64)
    totlen = np.where(totlen == 0, end - l3, totlen)  # TSO on the capturing host
    v4 &= (ihl >= 20) & (totlen >= ihl)
    frag4 = (v.b16[v.at(l3 + 6)] & 0x3FFF) != 0
    proto = np.where(v4, v.u8[v.at(l3 + 9)], -1).astype(np.int64)
    a4 = v.b32[v.at(l3 + 12)].astype(np.uint64)
    b4 = v.b32[v.at(l3 + 16)].astype(np.uint64)
    src_hi = np.zeros(n, dtype=np.uint64)
    dst_hi = np.zeros(n, dtype=np.uint64)
    src_lo = a4 | _V4MAPPED
    dst_lo = b4 | _V4MAPPED
    l4 = l3 + ihl
    l4len = totlen - ihl
    nh = proto.copy()
    frag6 = np.zeros(n, dtype=bool)
    if v6.any():  # only the IPv6 packets pay for IPv6
        i6 = np.flatnonzero(v6)
        x = l3[i6]
        src_hi[i6] = v.b64[v.at(x + 8)]
        src_lo[i6] = v.b64[v.at(x + 16)]
        dst_hi[i6] = v.b64[v.at(x + 24)]
        dst_lo[i6] = v.b64[v.at(x + 32)]
        l4[i6] = x + 40
        l4len[i6] = v.b16[v.at(x + 4)]
        nh[i6] = v.u8[v.at(x + 6)]
        for _ in range(4):  # hop-by-hop, routing, destination options
            ext = v6 & ((nh == 0) | (nh == 43) | (nh == 60)) & (l4 + 8 <= end)
            if not ext.any():
                break
            elen = (v.u8[v.at(l4 + 1)].astype(np.int64) + 1) * 8
            nh = np.where(ext, v.u8[v.at(l4)], nh)
            l4 = np.where(ext, l4 + elen, l4)
            l4len = np.where(ext, l4len - elen, l4len)
        frag6 = v6 & (nh == 44)
    ok = v4 | v6
    proto = np.where(ok, nh, -1)
    proto = np.where((v4 & frag4) | frag6 | (ok & (l4len < 0)), 0x100 | proto, proto)
    # TCP and UDP headers must be captured to count as such (else: bogus, 0x100).
    tcp = proto == 6
    tcp_ok = tcp & (l4 + 20 <= end)
    doff = (v.u8[v.at(l4 + 12)] >> 4).astype(np.int64) * 4
    seglen = l4len - doff
    tcp_ok &= (doff >= 20) & (seglen >= 0)
    udp = proto == 17
    udp_ok = udp & (l4 + 8 <= end)
    proto = np.where((tcp & ~tcp_ok) | (udp & ~udp_ok), 0x100 | proto, proto)
    ports = tcp_ok | udp_ok
    return L4(
        ok=ok, proto=proto, src_hi=src_hi, src_lo=src_lo, dst_hi=dst_hi, dst_lo=dst_lo,
        sport=np.where(ports, v.b16[v.at(l4)], 0).astype(np.int32),
        dport=np.where(ports, v.b16[v.at(l4 + 2)], 0).astype(np.int32),
        seq=np.where(tcp_ok, v.b32[v.at(l4 + 4)], 0).astype(np.uint32),
        ack=np.where(tcp_ok, v.b32[v.at(l4 + 8)], 0).astype(np.uint32),
        flags=np.where(tcp_ok, v.u8[v.at(l4 + 13)], 0).astype(np.uint8),
        win=np.where(tcp_ok, v.b16[v.at(l4 + 14)], 0).astype(np.int32),
        seglen=np.where(tcp_ok, seglen, 0).astype(np.int64),
    ), l4


def _take(l4: L4, idx: np.ndarray) -> dict:
    return {name: getattr(l4, name)[idx] for name in L4.__dataclass_fields__}


def decode(batch: Batch) -> Decoded:
    """Decode every packet of ``batch``; nothing here raises on damaged packets."""
    v = _Views(batch.buf)
    off = batch.data_off
    end = off + batch.caplen
    lt = batch.linktype
    etype, l3 = _l3(v, off, end, lt)
    outer, l4 = _ip(v, etype, l3, end)
    known = np.isin(lt, SUPPORTED_LINKTYPES)
    unknown: dict[int, int] = {}
    if not known.all():
        vals, counts = np.unique(lt[~known], return_counts=True)
        unknown = {int(a): int(b) for a, b in zip(vals, counts)}
    vx = (outer.proto == 17) & ((outer.sport == VXLAN_PORT) | (outer.dport == VXLAN_PORT)) & (l4 + 16 + 14 <= end)
    vni = np.zeros(len(off), dtype=np.int64)
    inner = outer
    if vx.any():
        idx = np.flatnonzero(vx)
        ioff = l4[idx] + 16
        et2, l32 = _l3(v, ioff, end[idx], np.full(len(idx), ETH, dtype=np.int32))
        sub, _ = _ip(v, et2, l32, end[idx])
        fields = {name: getattr(outer, name).copy() for name in L4.__dataclass_fields__}
        for name in fields:
            fields[name][idx] = getattr(sub, name)
        # An inner frame that is not IP stays a non-IP packet inside the tunnel.
        inner = L4(**fields)
        vni[idx] = v.b32[v.at(l4[idx] + 12)] >> 8
    n = len(off)
    return Decoded(
        frame=np.arange(batch.first_frame, batch.first_frame + n, dtype=np.int64),
        ts_ns=batch.ts_ns, wirelen=batch.wirelen, inner=inner, vxlan=vx, outer=outer, vni=vni,
        unknown_linktypes=unknown,
    )
