"""Classify a delay into a timer signature (vocabulary in model/signatures.py).

Used by the capture analysis (the gap between a segment and its retransmission)
and meant for the probe's latency tails too (a transaction that took one RTO
longer than usual). Pure functions, no I/O.
"""

from __future__ import annotations

import math

from vnetdiag.model import signatures as sig

# A timer fires a little after its nominal value (Linux RTO = SRTT + max(200 ms,
# 4 * RTTVAR)), never much before; a capture point adds a little jitter.
_EARLY = 0.9
_LATE = 1.6


def _doublings(delay_ms: float, base_ms: float) -> int | None:
    """k such that delay_ms is base_ms * 2**k within the tolerance band, else None."""
    if delay_ms <= 0:
        return None
    k = max(0, round(math.log2(delay_ms / base_ms)))
    nominal = base_ms * (2 ** k)
    if _EARLY * nominal <= delay_ms <= _LATE * nominal:
        return k
    return None


def classify_timer(delay_ms: float, *, syn: bool = False) -> str:
    """The timer a delay looks like: an RTO and its doublings, a SYN retransmission
    (1 s, 2 s, 4 s ... after the previous attempt), or ``other``."""
    if syn:
        k = _doublings(delay_ms, sig.SYN_RTO_MS)
        return sig.syn_retrans(k + 1) if k is not None else sig.OTHER
    k = _doublings(delay_ms, sig.MIN_RTO_MS)
    return sig.rto(k) if k is not None else sig.OTHER


def classify_retransmission(*, gap_ms: float, syn: bool, fast: bool, spurious: bool,
                            tail: bool, attempt: int = 1) -> str:
    """Signature of one retransmitted segment.

    gap_ms: time since the previous transmission of the same sequence number.
    syn: the segment is a SYN or SYN-ACK. fast/spurious: Wireshark's flags.
    tail: the segment was the highest sequence sent so far (what a tail-loss
    probe retransmits). attempt: 1 for the first retransmission of this
    sequence number, 2 for the second, ...
    """
    if fast:
        return sig.FAST_RETRANS
    if syn:
        # Linux >= 6.5 retries SYNs at 1 s linearly (net.ipv4.tcp_syn_linear_timeouts,
        # default 4) before doubling; older kernels double from the start. Either
        # way the gap is 1 s times a power of two and the label is the attempt.
        if _doublings(gap_ms, sig.SYN_RTO_MS) is not None:
            return sig.syn_retrans(attempt)
        return sig.OTHER
    label = classify_timer(gap_ms)
    if label != sig.OTHER:
        return label
    if spurious:
        return sig.SPURIOUS
    if tail and gap_ms < _EARLY * sig.MIN_RTO_MS:
        return sig.TLP
    return sig.OTHER
