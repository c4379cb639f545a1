"""Wireshark-compatible TCP sequence analysis, vectorised over all packets.

Follows the rules of Wireshark 4.0's ``tcp_analyze_sequence_number`` (the
``tcp.analysis.*`` flags): per direction of a stream it tracks the highest
sequence number sent (``nextseq``), the last ACK and window, and runs of
duplicate ACKs; a segment that does not advance ``nextseq`` is a fast
retransmission (>= 2 duplicate ACKs for its sequence number within 20 ms), an
out-of-order segment (within the handshake RTT, default 3 ms, of the highest
one), a spurious retransmission (already acknowledged) or a retransmission.

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


def _group_starts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first[i]: i starts a group, index of its group start per element)."""
    n = len(key)
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = key[1:] != key[:-1]
    start = np.where(first, np.arange(n), 0)
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
    is0 = (d == 0).astype(np.int64)
    c0 = np.cumsum(is0)
    c1 = np.cumsum(1 - is0)
    before0 = c0[s_start] - is0[s_start]  # d=0 packets before the block
    before1 = c1[s_start] - (1 - is0[s_start])
    ends = np.empty(n, dtype=np.int64)  # last index of each element's block
    block_end = np.append(np.flatnonzero(s_first)[1:], n) - 1
    ends = block_end[np.cumsum(s_first) - 1]
    total0 = c0[ends] - before0
    pos = np.where(is0 == 1, s_start + (c0 - before0 - 1), s_start + total0 + (c1 - before1 - 1))
    order = np.empty(n, dtype=np.int64)
    order[pos] = np.arange(n)
    return order


def _last_index(mask: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Index of the last element j <= i with mask[j] in i's group, else -1."""
    n = len(mask)
    idx = np.where(mask, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    return np.where(idx >= start, idx, -1)


def analyze(p: TcpPackets) -> TcpMarks:
    n = len(p.frame)
    ts = p.ts_ns
    fl = p.flags.astype(np.int64)
    seglen = p.seglen.astype(np.int64)
    seq = p.seq.astype(np.int64)
    ack = p.ack.astype(np.int64)
    win = p.win.astype(np.int64)
    synfin = (fl & (SYN | FIN)) != 0
    no_sfr = (fl & (SYN | FIN | RST)) == 0

    # Stream order: last packet of the other direction (the "rev" state).
    s_first, s_start = _group_starts(p.stream)
    last0 = _last_index(p.d == 0, s_start)
    last1 = _last_index(p.d == 1, s_start)
    rev = np.where(p.d == 0, last1, last0)
    has_rev = rev >= 0
    revi = np.maximum(rev, 0)

    # Direction order.
    grp = p.stream.astype(np.int64) * 2 + p.d
    order = _direction_order(p.d, s_first, s_start)
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    g = grp[order]
    first, start = _group_starts(g)
    gidx = np.cumsum(first) - 1
    has_prev = ~first
    sq = seq[order]
    dseq = np.zeros(n, dtype=np.int64)
    if n > 1:
        dseq[1:] = ((sq[1:] - sq[:-1] + 2**31) % 2**32) - 2**31
    dseq[first] = 0
    cs = np.cumsum(dseq)
    rel = cs - cs[start]
    sl = seglen[order]
    end = rel + sl + synfin[order]
    nextseq = _excl_running_max(end, gidx, first)

    rev_o = rev[order]
    has_rev_o = has_rev[order]
    rev_win = np.where(has_rev_o, win[revi][order], -1)
    zwp = has_prev & (sl == 1) & (rel == nextseq) & (rev_win == 0)
    if zwp.any():  # zero-window probes do not advance nextseq
        end_eff = np.where(zwp, np.iinfo(np.int64).min // 4, end)
        end_eff = np.where(first, end, end_eff)
        nextseq = _excl_running_max(np.maximum(end_eff, end.min()), gidx, first)
    raised = first | ((end > nextseq) & ~zwp)
    pos = np.arange(n)
    raised_last = np.where(raised, pos, -1)
    np.maximum.accumulate(raised_last, out=raised_last)
    ns_idx = np.empty(n, dtype=np.int64)
    ns_idx[0:1] = -1
    ns_idx[1:] = raised_last[:-1]
    ns_idx = np.where(has_prev & (ns_idx >= start), ns_idx, -1)
    ts_o = ts[order]
    nextseq_time = np.where(ns_idx >= 0, ts_o[np.maximum(ns_idx, 0)], 0)

    fl_o = fl[order]
    no_sfr_o = no_sfr[order]
    ka = has_prev & ((sl == 0) | (sl == 1)) & (rel == nextseq - 1) & no_sfr_o
    win_o = win[order]
    ack_o = ack[order]
    win_prev = np.roll(win_o, 1)
    ack_prev = np.roll(ack_o, 1)
    same = has_prev & (sl == 0) & (win_o == win_prev) & (rel == nextseq) & (ack_o == ack_prev) & no_sfr_o
    # A keep-alive ACK answers a keep-alive of the other direction; it is not a dup ACK.
    ka_stream = ka[inv]
    rev_was_ka = np.where(has_rev_o, ka_stream[revi][order], False)
    dup = same & (win_o != 0) & ~rev_was_ka
    ack_changed = first | (ack_o != ack_prev)
    cdup = np.cumsum(dup)
    seg_start = np.where(ack_changed, pos, 0)
    np.maximum.accumulate(seg_start, out=seg_start)
    dupnum = cdup - cdup[seg_start] + dup[seg_start]

    # Back to stream order for the reverse-direction lookups.
    dupnum_s = dupnum[inv]
    rev_dupnum = np.where(has_rev_o, dupnum_s[revi][order], 0)
    rev_ack = np.where(has_rev_o, ack[revi][order], 0)
    rev_ack_ts = np.where(has_rev_o, ts[revi][order], 0)

    rtt = _handshake_rtt(p, s_start, s_first)
    ooo_thres = np.where(rtt > 0, rtt, DEFAULT_OOO_NS)[p.stream[order]]

    cand = ((sl > 0) | synfin[order]) & ~ka
    sna = has_prev & (rel < nextseq)
    sna &= ~((sl > 1) & (nextseq - 1 == rel))
    sq_u = sq
    fast = cand & sna & has_rev_o & (rev_dupnum >= 2) & (rev_ack == sq_u) & (ts_o - rev_ack_ts < FAST_WINDOW_NS)
    ooo = cand & ~fast & sna & (ts_o - nextseq_time < ooo_thres) & (nextseq != rel + sl)
    le = (((sq_u + sl - rev_ack) + 2**31) % 2**32) - 2**31 <= 0
    spur = cand & ~fast & ~ooo & (sl > 0) & has_rev_o & (rev_ack != 0) & le
    plain = cand & ~fast & ~ooo & ~spur & sna
    retr = plain | fast | spur

    # Original transmission: the first segment that advanced nextseq past rel.
    original = np.full(n, -1, dtype=np.int64)
    if retr.any():
        adv = raised & ((sl > 0) | synfin[order])
        adv_pos = np.flatnonzero(adv)
        lo = int(min(end.min(), rel.min()))
        span = int(max(end.max(), rel.max())) - lo + 1
        key = gidx * span + (end - lo)
        adv_keys = key[adv_pos]
        rpos = np.flatnonzero(retr)
        q = gidx[rpos] * span + (rel[rpos] - lo)
        k = np.searchsorted(adv_keys, q, side="right")
        ok = k < len(adv_pos)
        cand_pos = adv_pos[np.minimum(k, len(adv_pos) - 1)]
        ok &= (gidx[cand_pos] == gidx[rpos]) & (cand_pos < rpos)
        original[rpos[ok]] = order[cand_pos[ok]]
    tail = (end == nextseq) | ((rel + sl) == nextseq)

    zero_window = (win == 0) & no_sfr
    return TcpMarks(
        retrans=retr[inv], fast=fast[inv], spurious=spur[inv], out_of_order=ooo[inv],
        dup_ack=dup[inv], zero_window=zero_window, keep_alive=ka[inv], rel_seq=rel[inv],
        tail=tail[inv], original=original[inv], handshake_rtt_ns=rtt,
        since_highest_ns=np.where(ns_idx >= 0, ts_o - nextseq_time, -1)[inv],
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
