"""Turn per-packet TCP marks into records: conversations, flows, retransmissions."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import numpy as np

from vnetdiag.analyze import signatures as sigs
from vnetdiag.model import signatures as sig
from vnetdiag.analyze.tcp import RST, SYN, TcpMarks, TcpPackets
from vnetdiag.model.pcap import LatencySummary, Retransmission, TcpFlow


def _per_stream(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum per stream; streams are contiguous blocks beginning at ``starts``."""
    if values.dtype == bool:  # counting: 32 bits are plenty and half the memory
        return np.add.reduceat(values.view(np.int8), starts, dtype=np.int64)
    return np.add.reduceat(values, starts, dtype=np.int64)


def _rr_latency(p: TcpPackets, m: TcpMarks, n_streams: int) -> dict[int, LatencySummary]:
    """Last data segment of a request (a->b) to the first of its response (b->a)."""
    data = np.flatnonzero((p.seglen > 0) & ~m.retrans)
    if len(data) < 2:
        return {}
    s, d, t = p.stream[data], p.d[data], p.ts_ns[data]
    turn = (s[1:] == s[:-1]) & (d[:-1] == 0) & (d[1:] == 1)
    lat = (t[1:] - t[:-1])[turn]
    st = s[1:][turn]
    if len(lat) == 0:
        return {}
    order = np.lexsort((lat, st))
    lat, st = lat[order], st[order]
    uniq, start, count = np.unique(st, return_index=True, return_counts=True)
    p50 = lat[start + (count - 1) // 2]
    p99 = lat[start + ((count - 1) * 99) // 100]
    mx = lat[start + count - 1]
    return {int(u): LatencySummary(count=int(c), p50_us=a / 1e3, p99_us=b / 1e3, max_us=x / 1e3)
            for u, c, a, b, x in zip(uniq, count, p50, p99, mx)}


def build_tcp_records(p: TcpPackets, m: TcpMarks, cols: dict, conv_list: list, t0: int, record):
    from vnetdiag.analyze.flows import endpoint

    stream = p.stream
    n_streams = int(stream.max()) + 1
    idx = np.arange(len(stream))
    first = np.ones(len(stream), dtype=bool)
    first[1:] = stream[1:] != stream[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(stream)) - 1
    gid_of = cols["gid"][starts]
    swap_first = cols["swap"][starts]
    wire = cols["wire"].astype(np.int64)
    lo2hi = ~cols["swap"]
    pk_lo = _per_stream(lo2hi, starts)
    pk_hi = _per_stream(~lo2hi, starts)
    by_lo = _per_stream(np.where(lo2hi, wire, 0), starts)
    by_hi = _per_stream(np.where(lo2hi, 0, wire), starts)
    n_retr = _per_stream(m.retrans, starts)

    ends_ab: list[tuple[str, str]] = []
    convs = []
    for s in range(n_streams):
        c = dataclasses.replace(conv_list[int(gid_of[s])], a_is_lo=not bool(swap_first[s]))
        conv = record(c, [pk_lo[s], pk_hi[s]], [by_lo[s], by_hi[s]], int(p.ts_ns[starts[s]]),
                      int(p.ts_ns[ends[s]]), t0, s, int(n_retr[s]))
        convs.append(conv)
        ends_ab.append((conv.a, conv.b))

    # Retransmissions: attempt number and the gap since the previous transmission.
    retrans: list[Retransmission] = []
    per_stream_sig: dict[int, Counter] = defaultdict(Counter)
    r = np.flatnonzero(m.retrans)
    if len(r):
        order = np.lexsort((p.frame[r], m.rel_seq[r], p.d[r], stream[r]))
        r = r[order]
        same = np.zeros(len(r), dtype=bool)
        same[1:] = (stream[r][1:] == stream[r][:-1]) & (p.d[r][1:] == p.d[r][:-1]) & \
            (m.rel_seq[r][1:] == m.rel_seq[r][:-1])
        orig = m.original[r]
        orig_ts = np.where(orig >= 0, p.ts_ns[np.maximum(orig, 0)], -1)
        prev_ts = np.empty(len(r), dtype=np.int64)
        prev_ts[0] = -1
        prev_ts[1:] = p.ts_ns[r][:-1]
        # Without the original in the capture (lost before the capture point),
        # the timer is measured from the highest segment sent, as Wireshark does.
        fallback = np.where(m.since_highest_ns[r] >= 0, p.ts_ns[r] - m.since_highest_ns[r], -1)
        prev_ts = np.where(same, prev_ts, np.where(orig_ts >= 0, orig_ts, fallback))
        attempt = np.ones(len(r), dtype=np.int64)
        run_start = np.where(~same, np.arange(len(r)), 0)
        np.maximum.accumulate(run_start, out=run_start)
        attempt = np.arange(len(r)) - run_start + 1
        fl = p.flags.astype(np.int64)
        for j, i in enumerate(r.tolist()):
            s = int(stream[i])
            a, b = ends_ab[s]
            flow = f"{a} -> {b}" if p.d[i] == 0 else f"{b} -> {a}"
            ts = int(p.ts_ns[i])
            delay = (ts - int(orig_ts[j])) / 1e6 if orig_ts[j] >= 0 else float("nan")
            gap = (ts - int(prev_ts[j])) / 1e6 if prev_ts[j] >= 0 else float("nan")
            syn = bool(fl[i] & SYN)
            kind = "fast" if m.fast[i] else "spurious" if m.spurious[i] else "retransmission"
            signature = sig.OTHER if gap != gap else sigs.classify_retransmission(
                gap_ms=gap, syn=syn, fast=bool(m.fast[i]),
                spurious=bool(m.spurious[i]), tail=bool(m.tail[i]), attempt=int(attempt[j]))
            per_stream_sig[s][signature] += 1
            retrans.append(Retransmission(
                flow=flow, stream=s, frame=int(p.frame[i]), time_s=(ts - t0) / 1e9, seq=int(m.rel_seq[i]),
                length_bytes=int(p.seglen[i]), kind=kind, delay_ms=round(delay, 3) if delay == delay else None,
                gap_ms=round(gap, 3) if gap == gap else None, attempt=int(attempt[j]), syn=syn,
                signature=signature,
                original_frame=int(p.frame[orig[j]]) if orig[j] >= 0 else None))
        retrans.sort(key=lambda x: x.frame)

    fl = p.flags.astype(np.int64)
    fast = _per_stream(m.fast, starts)
    spur = _per_stream(m.spurious, starts)
    ooo = _per_stream(m.out_of_order, starts)
    dup = _per_stream(m.dup_ack, starts)
    zw = _per_stream(m.zero_window, starts)
    rst = _per_stream((fl & RST) != 0, starts)
    synr = _per_stream(m.retrans & ((fl & SYN) != 0), starts)
    npk = np.bincount(stream, minlength=n_streams)
    rr = _rr_latency(p, m, n_streams)
    flows = []
    for s in range(n_streams):
        rtt = int(m.handshake_rtt_ns[s])
        flows.append(TcpFlow(
            stream=s, a=ends_ab[s][0], b=ends_ab[s][1], packets=int(npk[s]), retransmissions=int(n_retr[s]),
            fast_retransmissions=int(fast[s]), spurious_retransmissions=int(spur[s]), out_of_order=int(ooo[s]),
            dup_acks=int(dup[s]), zero_windows=int(zw[s]), resets=int(rst[s]), syn_retransmissions=int(synr[s]),
            handshake_rtt_us=rtt / 1e3 if rtt >= 0 else None, request_response=rr.get(s),
            signatures=dict(per_stream_sig.get(s, {}))))
    del idx
    return flows, retrans, convs
