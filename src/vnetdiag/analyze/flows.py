"""Conversations (tshark's ``-z conv,tcp`` / ``conv,udp``) and TCP flow analysis.

``FlowAccumulator.add`` takes decoded packet batches (UDP and other-IP
conversations are summed per batch; for TCP only the header fields the
sequence analysis needs are kept, ~40 bytes a packet) and ``finish`` returns
the records. Pure: takes arrays, returns records, no I/O.

TCP conversations are split like tshark splits ``tcp.stream``: a SYN without
ACK whose sequence number differs from the one the direction started with
opens a new stream on the same addresses and ports (port reuse).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vnetdiag.analyze import signatures as sigs
from vnetdiag.analyze.tcp import ACK, SYN, TcpPackets, analyze
from vnetdiag.collect.pcap_decode import L4, Decoded
from vnetdiag.model.pcap import (
    CaptureInfo, Conversation, LatencySummary, PcapReport, Retransmission, TcpFlow, Tunnel,
)

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def _fmt_addr(hi: int, lo: int) -> str:
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def endpoint(hi: int, lo: int, port: int | None) -> str:
    addr = _fmt_addr(hi, lo)
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass
class _Conv:
    proto: int
    key: tuple
    """(lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port) of the canonical endpoints."""
    a_is_lo: bool
    first_frame: int
    first_ns: int
    last_ns: int
    last_frame: int = 0
    """Start and end are the times of the first and last frame (in file order),
    as tshark takes them, not the smallest and largest time."""
    pk: list = field(default_factory=lambda: [0, 0])
    """Packets lo->hi, hi->lo."""
    by: list = field(default_factory=lambda: [0, 0])
    tunnel: Tunnel | None = None
    vxlan_outer: bool = False


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD], dtype=np.uint64)


def _group(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct key, key number of every row).

    Keys are hashed to 64 bits for a fast unique; rows are then compared with
    their group's first row, and any collision falls back to exact grouping."""
    with np.errstate(over="ignore"):
        h = (cols * _MIX).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not (cols[first][inverse] == cols).all():
        keys = np.ascontiguousarray(cols).view("V40").ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return first, inverse


def _canonical(l4: L4, idx: np.ndarray):
    """Key columns of the packets ``idx`` with endpoints in canonical order, and
    ``swap`` (True when the source is the higher endpoint)."""
    sh, sl, dh, dl = l4.src_hi[idx], l4.src_lo[idx], l4.dst_hi[idx], l4.dst_lo[idx]
    sp, dp = l4.sport[idx].astype(np.uint64), l4.dport[idx].astype(np.uint64)
    swap = (sh > dh) | ((sh == dh) & ((sl > dl) | ((sl == dl) & (sp > dp))))
    proto = (l4.proto[idx].astype(np.int64) & 0x1FF).astype(np.uint64)
    cols = np.empty((len(idx), 5), dtype=np.uint64)
    cols[:, 0] = np.where(swap, dh, sh)
    cols[:, 1] = np.where(swap, dl, sl)
    cols[:, 2] = np.where(swap, sh, dh)
    cols[:, 3] = np.where(swap, sl, dl)
    cols[:, 4] = (proto << np.uint64(40)) | (np.where(swap, dp, sp) << np.uint64(16)) | np.where(swap, sp, dp)
    return cols, swap


class FlowAccumulator:
    """Feed decoded batches, then ``finish``."""

    def __init__(self) -> None:
        self.convs: dict[bytes, int] = {}
        self.conv_list: list[_Conv] = []
        self.tcp_parts: list[dict[str, np.ndarray]] = []
        self.undecoded = 0
        self.unknown_linktypes: Counter[int] = Counter()
        self.bytes_on_wire = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def _ids(self, l4: L4, idx: np.ndarray, frame, ts, vxlan_outer: bool, tunnels=None):
        cols, swap = _canonical(l4, idx)
        first, inverse = _group(cols)
        gids = np.empty(len(first), dtype=np.int64)
        for u, f in enumerate(first.tolist()):
            kbytes = cols[f].tobytes()
            gid = self.convs.get(kbytes)
            if gid is None:
                gid = len(self.conv_list)
                self.convs[kbytes] = gid
                c = cols[f]
                proto = int(c[4] >> np.uint64(40))
                key = (int(c[0]), int(c[1]), int((c[4] >> np.uint64(16)) & np.uint64(0xFFFF)),
                       int(c[2]), int(c[3]), int(c[4] & np.uint64(0xFFFF)))
                tunnel = tunnels(idx[f]) if tunnels is not None else None
                self.conv_list.append(_Conv(proto=proto, key=key, a_is_lo=not bool(swap[f]),
                                            first_frame=int(frame[idx[f]]), first_ns=int(ts[idx[f]]),
                                            last_ns=int(ts[idx[f]]), tunnel=tunnel, vxlan_outer=vxlan_outer))
            else:
                # Layers (inner flows, then vxlan tunnels) are added one after the
                # other: an earlier frame of a known conversation can come later.
                c = self.conv_list[gid]
                fr = int(frame[idx[f]])
                if fr < c.first_frame:
                    c.first_frame, c.first_ns, c.a_is_lo = fr, int(ts[idx[f]]), not bool(swap[f])
            gids[u] = gid
        return gids[inverse], swap

    def add(self, d: Decoded) -> None:
        n = len(d.frame)
        if n == 0:
            return
        self.bytes_on_wire += int(d.wirelen.sum())
        t0, t1 = int(d.ts_ns.min()), int(d.ts_ns.max())
        self.first_ns = t0 if self.first_ns is None else min(self.first_ns, t0)
        self.last_ns = t1 if self.last_ns is None else max(self.last_ns, t1)
        for lt, c in d.unknown_linktypes.items():
            self.unknown_linktypes[lt] += c
        inner = d.inner
        self.undecoded += int((~inner.ok).sum())

        def tunnel_of(i: int) -> Tunnel | None:
            if not d.vxlan[i]:
                return None
            o = d.outer
            return Tunnel(outer_a=_fmt_addr(int(o.src_hi[i]), int(o.src_lo[i])),
                          outer_b=_fmt_addr(int(o.dst_hi[i]), int(o.dst_lo[i])), vni=int(d.vni[i]))

        layers = [(inner, np.flatnonzero(inner.ok), False, tunnel_of)]
        if d.vxlan.any():
            layers.append((d.outer, np.flatnonzero(d.vxlan), True, None))
        for l4, idx, outer, tun in layers:
            if len(idx) == 0:
                continue
            proto = l4.proto[idx]
            tcp = proto == 6
            nontcp = idx[~tcp]
            if len(nontcp):
                self._sum(l4, nontcp, d, outer)
            tidx = idx[tcp]
            if len(tidx):
                gid, swap = self._ids(l4, tidx, d.frame, d.ts_ns, False, tun)
                self.tcp_parts.append({
                    "gid": gid.astype(np.int32), "swap": swap, "frame": d.frame[tidx], "ts": d.ts_ns[tidx],
                    "wire": d.wirelen[tidx].astype(np.int32), "seq": l4.seq[tidx], "ack": l4.ack[tidx],
                    "flags": l4.flags[tidx], "win": l4.win[tidx], "seglen": l4.seglen[tidx].astype(np.int32),
                })

    def _sum(self, l4: L4, idx: np.ndarray, d: Decoded, outer: bool) -> None:
        gid, swap = self._ids(l4, idx, d.frame, d.ts_ns, outer)
        uniq, inverse = np.unique(gid, return_inverse=True)
        m = len(uniq)
        wire = d.wirelen[idx]
        ts = d.ts_ns[idx]
        pk = [np.bincount(inverse, weights=(swap == s), minlength=m) for s in (False, True)]
        by = [np.bincount(inverse, weights=np.where(swap == s, wire, 0), minlength=m) for s in (False, True)]
        frames = d.frame[idx]
        last = np.full(m, -1, dtype=np.int64)  # position of each one's last frame
        np.maximum.at(last, inverse, np.arange(len(idx)))
        for u, g in enumerate(uniq):
            c = self.conv_list[g]
            c.vxlan_outer = c.vxlan_outer or outer
            for s in (0, 1):
                c.pk[s] += int(pk[s][u])
                c.by[s] += int(by[s][u])
            fr = int(frames[last[u]])
            if fr >= c.last_frame:
                c.last_frame, c.last_ns = fr, int(ts[last[u]])

    # ------------------------------------------------------------------
    def finish(self, capture: CaptureInfo, phase=None) -> PcapReport:
        """The report; ``phase(name, count)`` is told each step (see capture.Phase)."""
        t0 = self.first_ns or 0
        convs: list[Conversation] = []
        for c in self.conv_list:
            if c.proto == 6 or (c.pk[0] + c.pk[1]) == 0:
                continue
            convs.append(self._record(c, c.pk, c.by, c.first_ns, c.last_ns, t0, None, 0))
        flows, retrans, tcp_convs = self._tcp(t0, phase or (lambda _name, _count: None))
        convs.extend(tcp_convs)
        convs.sort(key=lambda c: (c.start_s, c.proto))
        signatures = Counter(r.signature for r in retrans)
        return PcapReport(capture=capture, conversations=tuple(convs), flows=tuple(flows),
                          retransmissions=tuple(retrans), signatures=dict(signatures.most_common()))

    def _record(self, c: _Conv, pk, by, first_ns, last_ns, t0, stream, nretrans) -> Conversation:
        lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port = c.key
        proto = c.proto & 0xFF
        ports = proto in (6, 17) and not c.proto & 0x100
        lo = endpoint(lo_hi, lo_lo, lo_port if ports else None)
        hi = endpoint(hi_hi, hi_lo, hi_port if ports else None)
        name = _PROTO_NAMES.get(proto, f"ip-{proto}") if not c.proto & 0x100 else f"ip-{proto}-partial"
        a, b, (pab, pba), (bab, bba) = (lo, hi, pk, by) if c.a_is_lo else (hi, lo, pk[::-1], by[::-1])
        return Conversation(proto=name, a=a, b=b, packets_ab=int(pab), bytes_ab=int(bab), packets_ba=int(pba),
                            bytes_ba=int(bba), start_s=(first_ns - t0) / 1e9, duration_s=(last_ns - first_ns) / 1e9,
                            retransmissions=nretrans, stream=stream, tunnel=c.tunnel, vxlan_outer=c.vxlan_outer)

    def _tcp(self, t0: int, phase):
        if not self.tcp_parts:
            return [], [], []
        cols = {k: np.concatenate([p[k] for p in self.tcp_parts]) for k in self.tcp_parts[0]}
        self.tcp_parts = []
        gid = cols["gid"]
        phase("streams", len(gid))
        # numpy's stable sort is a radix sort for 16-bit keys: use it when it fits.
        key = gid.astype(np.uint16) if len(self.conv_list) < 2**16 else gid
        order = np.argsort(key, kind="stable")
        del key, gid
        # Only what the stream split needs is reordered twice; the rest once.
        split_cols = {k: cols[k][order] for k in ("gid", "swap", "flags", "seq", "ack", "frame")}
        stream_of, a_swap = _split_streams(split_cols)
        # Packets are now grouped by stream (in 4-tuple order), frames ascending
        # within. Number streams by first appearance, like tcp.stream, and
        # reorder whole blocks (no sort over packets).
        starts = np.flatnonzero(np.diff(stream_of, prepend=-1))
        sizes = np.diff(np.append(starts, len(stream_of)))
        block_order = np.argsort(split_cols["frame"][starts], kind="stable")
        del split_cols
        new_starts = starts[block_order]
        new_sizes = sizes[block_order]
        offsets = np.repeat(new_starts - np.concatenate(([0], np.cumsum(new_sizes)[:-1])), new_sizes)
        perm = np.arange(len(stream_of)) + offsets
        final = order[perm]
        del order, perm, offsets
        cols = {k: v[final] for k, v in cols.items()}
        del final
        stream = np.repeat(np.arange(len(starts)), new_sizes)
        stream_swap_a = np.repeat(a_swap[block_order], new_sizes)
        d = (cols["swap"] != stream_swap_a).astype(np.int8)
        pk = TcpPackets(stream=stream, d=d, frame=cols["frame"], ts_ns=cols["ts"], seq=cols["seq"],
                        ack=cols["ack"], flags=cols["flags"], win=cols["win"], seglen=cols["seglen"])
        phase("tcp", len(stream))
        marks = analyze(pk)
        from vnetdiag.analyze.flow_report import build_tcp_records
        phase("records", len(starts))
        return build_tcp_records(pk, marks, cols, self.conv_list, t0, self._record)


def _split_streams(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stream id per packet (packets sorted by 4-tuple id, then frame) and, per
    stream, the ``swap`` value of its first packet (which endpoint is a)."""
    gid = cols["gid"]
    n = len(gid)
    first = np.ones(n, dtype=bool)
    first[1:] = gid[1:] != gid[:-1]
    fl = cols["flags"].astype(np.int64)
    pure_syn = (fl & (SYN | ACK)) == SYN
    # Groups needing a closer look: a pure SYN that is not the group's first
    # packet, with a sequence number other than that first packet's.
    start = np.where(first, np.arange(n), 0)
    np.maximum.accumulate(start, out=start)
    suspect = pure_syn & ~first & ((cols["seq"] != cols["seq"][start]) | ~pure_syn[start])
    new = first.copy()
    for g0 in np.unique(start[suspect]):
        _split_group(cols, int(g0), new)
    sid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    return sid, cols["swap"][starts]


def _split_group(cols: dict[str, np.ndarray], g0: int, new: np.ndarray) -> None:
    gid = cols["gid"]
    n = len(gid)
    base: dict[bool, int | None] = {False: None, True: None}
    i = g0
    while i < n and gid[i] == gid[g0]:
        s = bool(cols["swap"][i])
        f = int(cols["flags"][i])
        seq = int(cols["seq"][i])
        if (f & (SYN | ACK)) == SYN and base[s] is not None and seq != base[s] and i != g0:
            new[i] = True
            base = {False: None, True: None}
        if base[s] is None:
            base[s] = seq if f & SYN else (seq - 1) & 0xFFFFFFFF
        if base[not s] is None and f & ACK:
            base[not s] = (int(cols["ack"][i]) - 1) & 0xFFFFFFFF
        i += 1
