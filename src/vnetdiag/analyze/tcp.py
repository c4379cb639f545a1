"""Wireshark-compatible TCP sequence analysis, vectorised over all packets.

Follows the rules of Wireshark 4.0's ``tcp_analyze_sequence_number`` (the
``tcp.analysis.*`` flags): per direction of a stream it tracks the highest
sequence number sent (``nextseq``), the last ACK and window, and runs of
duplicate ACKs; a segment that does not advance ``nextseq`` is a fast
retransmission (>= 2 duplicate ACKs for its sequence number within 20 ms), an
out-of-order segment (within the handshake RTT, default 3 ms, of the highest
one) or a retransmission; a data segment already acknowledged is a spurious
retransmission, checked first.

Every state Wireshark keeps "so far" is computed here for all packets at once
with running maxima and cumulative sums over packets sorted by (stream,
direction, frame). Input is already sorted by (stream, frame). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
FAST_WINDOW_NS = 20_000_000
DEFAULT_OOO_NS = 3_000_000


@dataclass(frozen=True, kw_only=True)
class TcpPackets:
    """TCP packets sorted by (stream, frame); ``d`` is 0 from endpoint a, 1 from b."""

    stream: np.ndarray
    d: np.ndarray
    frame: np.ndarray
    ts_ns: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    win: np.ndarray
    seglen: np.ndarray


@dataclass(frozen=True, kw_only=True)
class TcpMarks:
    """Per-packet results, in the order of the input."""

    retrans: np.ndarray
    """bool: Wireshark sets tcp.analysis.retransmission (plain, fast or spurious)."""
    fast: np.ndarray
    spurious: np.ndarray
    out_of_order: np.ndarray
    dup_ack: np.ndarray
    zero_window: np.ndarray
    keep_alive: np.ndarray
    rel_seq: np.ndarray
    """Sequence number relative to the first packet of the direction (unwrapped)."""
    tail: np.ndarray
    """The segment ended at the highest sequence sent so far."""
    original: np.ndarray
    """Index of the original transmission of a retransmitted segment, else -1."""
    since_highest_ns: np.ndarray
    """Time since the segment that last raised the highest sequence number
    (Wireshark's tcp.analysis.rto for a retransmission); -1 if none."""
    handshake_rtt_ns: np.ndarray
    """Per stream: SYN to handshake ACK, -1 if the handshake was not seen."""


def _ar(n: int) -> np.ndarray:
    """Indices 0..n-1 in the narrowest type that holds them (memory is the cost)."""
    return np.arange(n, dtype=np.int32 if n < 2**31 - 1 else np.int64)


def _group_starts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first[i]: i starts a group, index of its group start per element)."""
    n = len(key)
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = key[1:] != key[:-1]
    start = np.where(first, _ar(n), 0)
    np.maximum.accumulate(start, out=start)
    return first, start


def _excl_running_max(values: np.ndarray, gidx: np.ndarray, first: np.ndarray) -> np.ndarray:
    """max(values[j]) over earlier j of the same group (groups contiguous); the
    group's first element gets the group's own minimum possible (caller masks it)."""
    if len(values) == 0:
        return values.copy()
    lo = int(values.min())
    span = int(values.max()) - lo + 1
    shifted = (values - lo) + gidx.astype(np.int64) * span
    acc = np.maximum.accumulate(shifted)
    out = np.empty_like(acc)
    out[1:] = acc[:-1]
    out[0] = acc[0]
    out = out - gidx.astype(np.int64) * span + lo
    return np.where(first, lo - 1, out)


def _direction_order(d: np.ndarray, s_first: np.ndarray, s_start: np.ndarray) -> np.ndarray:
    """Permutation that puts, within each stream block, the a->b packets before
    the b->a ones, frame order kept (a stable partition, O(n), no sort)."""
    n = len(d)
    idx_t = _ar(0).dtype
    is0 = (d == 0).astype(idx_t)
    c0 = np.cumsum(is0, dtype=idx_t)
    c1 = np.cumsum(1 - is0, dtype=idx_t)
    before0 = c0[s_start] - is0[s_start]  # d=0 packets before the block
    before1 = c1[s_start] - (1 - is0[s_start])
    block_end = np.append(np.flatnonzero(s_first)[1:], n) - 1  # last index of each block
    ends = block_end[np.cumsum(s_first, dtype=idx_t) - 1]
    total0 = c0[ends] - before0
    pos = np.where(is0 == 1, s_start + (c0 - before0 - 1), s_start + total0 + (c1 - before1 - 1))
    order = np.empty(n, dtype=idx_t)
    order[pos] = _ar(n)
    return order


def _last_index(mask: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Index of the last element j <= i with mask[j] in i's group, else -1."""
    n = len(mask)
    idx = np.where(mask, _ar(n), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= start, idx, -1)


def analyze(p: TcpPackets) -> TcpMarks:
    """Wireshark's per-packet flags for all packets at once (see module doc).

    Arrays over all packets are kept few (memory is the cost that matters at a
    million packets); the reverse-direction state is gathered only for the
    packets that need it (data segments, candidate duplicate ACKs)."""
    n = len(p.frame)
    d = p.d
    # Stream order: index of the latest packet of the other direction ("rev").
    s_first, s_start = _group_starts(p.stream)
    rev = np.where(d == 0, _last_index(d == 1, s_start), _last_index(d == 0, s_start))
    order = _direction_order(d, s_first, s_start)
    inv = np.empty(n, dtype=order.dtype)
    inv[order] = _ar(n)
    rev_o = rev[order]
    del rev

    # Direction order: each (stream, direction) is one contiguous block.
    first, start = _group_starts((p.stream * 2 + d)[order])
    gidx = np.cumsum(first, dtype=order.dtype) - 1
    has_prev = ~first
    sq = p.seq[order].astype(np.int64)
    rel = np.zeros(n, dtype=np.int64)
    if n > 1:
        rel[1:] = ((sq[1:] - sq[:-1] + 2**31) % 2**32) - 2**31
    rel[first] = 0
    np.cumsum(rel, out=rel)
    rel -= rel[start]
    sl = p.seglen[order].astype(np.int64)
    fl_o = p.flags[order]
    synfin = (fl_o & (SYN | FIN)) != 0
    no_sfr = (fl_o & (SYN | FIN | RST)) == 0
    end = rel + sl + synfin
    nextseq = _excl_running_max(end, gidx, first)

    # Zero-window probes (1 byte at nextseq while the other side shows window 0)
    # do not advance nextseq.
    zwp = np.zeros(n, dtype=bool)
    z = np.flatnonzero(has_prev & (sl == 1) & (rel == nextseq))
    if len(z):
        rz = rev_o[z]
        zwp[z[(rz >= 0) & (p.win[np.maximum(rz, 0)] == 0)]] = True
        if zwp.any():
            end_eff = np.where(zwp & ~first, end.min(), end)
            nextseq = _excl_running_max(end_eff, gidx, first)
            del end_eff
    pos = _ar(n)
    raised = first | ((end > nextseq) & ~zwp)
    ns_idx = np.where(raised, pos, -1)
    np.maximum.accumulate(ns_idx, out=ns_idx)
    ns_idx[1:] = ns_idx[:-1].copy()
    ns_idx[first] = -1  # the segment that set nextseq, before this packet

    ka = has_prev & (sl <= 1) & (rel == nextseq - 1) & no_sfr
    win_o = p.win[order]
    ack_o = p.ack[order]
    same_ack = np.zeros(n, dtype=bool)
    same_ack[1:] = ack_o[1:] == ack_o[:-1]
    same_ack &= has_prev
    dup = same_ack & (sl == 0) & (rel == nextseq) & no_sfr & (win_o != 0)
    dup[1:] &= win_o[1:] == win_o[:-1]
    di = np.flatnonzero(dup)
    if len(di):  # a keep-alive ACK answers a keep-alive of the other direction
        rd = rev_o[di]
        was_ka = (rd >= 0) & ka[inv[np.maximum(rd, 0)]]
        dup[di[was_ka]] = False
    del di, win_o
    cdup = np.cumsum(dup, dtype=order.dtype)
    seg_start = np.where(same_ack, 0, pos)
    np.maximum.accumulate(seg_start, out=seg_start)
    dupnum = cdup - cdup[seg_start] + dup[seg_start]
    del cdup, seg_start, same_ack

    rtt = _handshake_rtt(p, s_start, s_first)
    retr = np.zeros(n, dtype=bool)
    fast = np.zeros(n, dtype=bool)
    spur = np.zeros(n, dtype=bool)
    ooo = np.zeros(n, dtype=bool)
    since = np.full(n, -1, dtype=np.int64)
    original = np.full(n, -1, dtype=np.int64)

    # Segments with data (or SYN/FIN) that are not keep-alives: the candidates.
    c = np.flatnonzero(((sl > 0) | synfin) & ~ka)
    if len(c):
        ts = p.ts_ns
        r = rev_o[c]
        has_r = r >= 0
        ri = np.maximum(r, 0)
        r_ack = np.where(has_r, p.ack[ri].astype(np.int64), 0)
        r_ts = ts[ri]
        r_dup = np.where(has_r, dupnum[inv[ri]], 0)
        sq_c, sl_c, rel_c, ns_c = sq[c], sl[c], rel[c], nextseq[c]
        ts_c = ts[order[c]]
        hi = ns_idx[c]
        hi_ts = np.where(hi >= 0, ts[order[np.maximum(hi, 0)]], 0)
        sna = has_prev[c] & (rel_c < ns_c) & ~((sl_c > 1) & (ns_c - 1 == rel_c))
        # Wireshark 4.0 order: spurious (already acknowledged), then fast, then
        # out-of-order, then plain retransmission.
        le = (((sq_c + sl_c - r_ack) + 2**31) % 2**32) - 2**31 <= 0
        sp = (sl_c > 0) & has_r & (r_ack != 0) & le
        f = ~sp & sna & has_r & (r_dup >= 2) & (r_ack == sq_c) & (ts_c - r_ts < FAST_WINDOW_NS)
        thres = np.where(rtt > 0, rtt, DEFAULT_OOO_NS)[p.stream[order[c]]]
        o = ~sp & ~f & sna & (ts_c - hi_ts < thres) & (ns_c != rel_c + sl_c)
        pl = ~sp & ~f & ~o & sna
        rt = pl | f | sp
        cs_ = order[c]
        fast[cs_], ooo[cs_], spur[cs_], retr[cs_] = f, o, sp, rt
        since[cs_] = np.where(hi >= 0, ts_c - hi_ts, -1)
        # Original transmission: the first segment that advanced nextseq past rel.
        rpos = c[rt]
        if len(rpos):
            adv_pos = np.flatnonzero(raised & ((sl > 0) | synfin))
            lo = int(min(end.min(), rel.min()))
            span = int(max(end.max(), rel.max())) - lo + 1
            g64 = gidx.astype(np.int64)  # keys need 64 bits: span can exceed 2**31
            adv_keys = g64[adv_pos] * span + (end[adv_pos] - lo)
            q = g64[rpos] * span + (rel[rpos] - lo)
            k = np.searchsorted(adv_keys, q, side="right")
            ok = k < len(adv_pos)
            cand_pos = adv_pos[np.minimum(k, max(len(adv_pos) - 1, 0))] if len(adv_pos) else rpos
            ok &= (gidx[cand_pos] == gidx[rpos]) & (cand_pos < rpos)
            original[order[rpos[ok]]] = order[cand_pos[ok]]
    tail = (end == nextseq) | ((rel + sl) == nextseq)

    zero_window = (p.win == 0) & ((p.flags & (SYN | FIN | RST)) == 0)
    return TcpMarks(
        retrans=retr, fast=fast, spurious=spur, out_of_order=ooo,
        dup_ack=dup[inv], zero_window=zero_window, keep_alive=ka[inv], rel_seq=rel[inv],
        tail=tail[inv], original=original, handshake_rtt_ns=rtt, since_highest_ns=since,
    )


def _handshake_rtt(p: TcpPackets, s_start: np.ndarray, s_first: np.ndarray) -> np.ndarray:
    """Per stream: time from the most recent SYN to the first ACK of the
    handshake (Wireshark's tcp.analysis.initial_rtt); -1 when not seen.
    Only streams whose first packet is the client's SYN qualify."""
    n_streams = int(p.stream.max()) + 1 if len(p.stream) else 0
    rtt = np.full(n_streams, -1, dtype=np.int64)
    fl = p.flags
    sa = fl & (SYN | ACK)
    first_syn = np.flatnonzero(s_first & (sa == SYN))
    if len(first_syn) == 0:
        return rtt
    client_d = np.full(n_streams, -1, dtype=np.int64)
    client_d[p.stream[first_syn]] = p.d[first_syn]
    big = np.iinfo(np.int64).max
    # First SYN-ACK from the server in each such stream.
    synack = np.flatnonzero(sa == (SYN | ACK))
    synack = synack[p.d[synack] != client_d[p.stream[synack]]]
    synack = synack[client_d[p.stream[synack]] >= 0]
    first_sa = np.full(n_streams, big, dtype=np.int64)
    np.minimum.at(first_sa, p.stream[synack], synack)
    # First client ACK (no SYN) after it.
    idx = np.flatnonzero(sa == ACK)
    st = p.stream[idx]
    idx = idx[(p.d[idx] == client_d[st]) & (idx > first_sa[st])]
    if len(idx) == 0:
        return rtt
    st = p.stream[idx]
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = st[1:] != st[:-1]
    acks = idx[keep]
    # The client's most recent SYN before that ACK.
    syns = np.flatnonzero(sa == SYN)
    syns = syns[p.d[syns] == client_d[p.stream[syns]]]
    k = np.searchsorted(syns, acks) - 1
    ok = (k >= 0)
    last_syn = syns[np.maximum(k, 0)]
    ok &= p.stream[last_syn] == p.stream[acks]
    rtt[p.stream[acks[ok]]] = p.ts_ns[acks[ok]] - p.ts_ns[last_syn[ok]]
    return rtt
