"""Latency tails by TCP timer signature (pure: records in, records out).

A slow request/response transaction on a path with tiny RTTs is slow because a
timer fired. Which timer shows in how long it took:

* the minimum RTO (Linux 200 ms, or the route's ``rto_min``) and its doublings:
  a lost request or response is recovered by a tail-loss probe or RTO about
  ``rto_min`` later; a second loss adds twice that (bands ``min-rto``,
  ``rto-x2``, ``rto-x4`` ...);
* the delayed ACK (40 ms) when Nagle holds a segment back (``delayed-ack``);
* for connects, SYN retransmissions 1, 2, 4 s apart: 1, 3, 7 s cumulative
  (``syn-retrans-1``, ``-2``, ``-3`` ...); kernels with
  net.ipv4.tcp_syn_linear_timeouts = N (6.5+, default 4) first wait 1 s N+1
  times: 1, 2, 3, 4, 5, 7, 11 s cumulative. The caller reads N from the
  namespace; the bands follow it.

Each band starts a little below its nominal value (timers never fire early,
but clocks and the band edges need slack) and ends where the next begins.
A transaction is confirmed when TCP_INFO, read right after it, showed the
retransmission the signature implies (on the client's or the server's socket).
The labels are the shared vocabulary of ``vnetdiag.model.signatures``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vnetdiag.model import signatures as sig
from vnetdiag.model.probe import SlowTransaction, TailBucket

_EARLY = 0.9
_MAX_DOUBLINGS = 6
_MAX_SYN_RETRIES = 8


@dataclass(frozen=True, kw_only=True)
class Band:
    signature: str
    phase: str
    low_ms: float
    high_ms: float | None
    expected_retransmits: int


def syn_schedule_ms(k: int, *, syn_rto_ms: float = sig.SYN_RTO_MS, linear_timeouts: int = 0) -> float:
    """When the k-th SYN retransmission leaves, counted from the first SYN: the
    first ``linear_timeouts + 1`` timeouts are ``syn_rto_ms`` each (when the
    kernel has tcp_syn_linear_timeouts), then each doubles."""
    total, rto = 0.0, syn_rto_ms
    for i in range(1, k + 1):
        total += rto
        if i > linear_timeouts:
            rto *= 2
    return total


def bands(*, rto_min_ms: float = sig.MIN_RTO_MS, delayed_ack_ms: float = sig.DELAYED_ACK_MS,
          syn_rto_ms: float = sig.SYN_RTO_MS, syn_linear_timeouts: int = 0) -> tuple[Band, ...]:
    """Signature bands for this path. Overlaps are resolved in the RTO's favour
    (a route with rto_min 40 ms has no separate delayed-ACK band)."""
    out: list[Band] = []
    rto_low = _EARLY * rto_min_ms
    ack_low, ack_high = _EARLY * delayed_ack_ms, 1.6 * delayed_ack_ms
    if ack_high <= rto_low:
        out.append(Band(signature=sig.DELAYED_ACK, phase="transaction", low_ms=ack_low, high_ms=ack_high,
                        expected_retransmits=0))
    elif ack_low < rto_low:
        out.append(Band(signature=sig.DELAYED_ACK, phase="transaction", low_ms=ack_low, high_ms=rto_low,
                        expected_retransmits=0))
    for k in range(_MAX_DOUBLINGS + 1):
        high = _EARLY * rto_min_ms * 2 ** (k + 1) if k < _MAX_DOUBLINGS else None
        out.append(Band(signature=sig.rto(k), phase="transaction", low_ms=_EARLY * rto_min_ms * 2 ** k,
                        high_ms=high, expected_retransmits=k + 1))
    def at(k: int) -> float:
        return _EARLY * syn_schedule_ms(k, syn_rto_ms=syn_rto_ms, linear_timeouts=syn_linear_timeouts)

    for k in range(1, _MAX_SYN_RETRIES + 1):
        high = at(k + 1) if k < _MAX_SYN_RETRIES else None
        out.append(Band(signature=sig.syn_retrans(k), phase="connect", low_ms=at(k), high_ms=high,
                        expected_retransmits=k))
    return tuple(out)


def classify(latency_ms: float, phase: str, table: Sequence[Band]) -> Band | None:
    """The band a slow transaction (or connect) falls in, or None for "other"."""
    for band in table:
        if band.phase == phase and latency_ms >= band.low_ms and (band.high_ms is None or latency_ms < band.high_ms):
            return band
    return None


def confirmed(s: SlowTransaction) -> bool:
    """TCP_INFO saw at least one retransmission across this transaction."""
    return bool((s.client_retrans_delta or 0) > 0 or (s.server_retrans_delta or 0) > 0)


def tail_table(slow: Iterable[SlowTransaction], *, transactions: int, connects: int = 0,
               rto_min_ms: float = sig.MIN_RTO_MS, slow_threshold_ms: float = 0.0,
               syn_linear_timeouts: int = 0) -> tuple[TailBucket, ...]:
    """Counts of slow transactions per signature, with their share of all
    transactions (connect-phase ones: of all connects) and how many TCP_INFO
    confirmed. Bands nothing fell into are left out; ``other`` (slower than
    ``slow_threshold_ms`` but in no band) comes last in its phase."""
    table = bands(rto_min_ms=rto_min_ms, syn_linear_timeouts=syn_linear_timeouts)
    counts: dict[tuple[str, str], list] = {}
    order: dict[tuple[str, str], Band | None] = {}
    for s in slow:
        band = classify(s.latency_us / 1000.0, s.phase, table)
        key = (band.signature if band else sig.OTHER, s.phase)
        order.setdefault(key, band)
        entry = counts.setdefault(key, [0, 0])
        entry[0] += 1
        if band is not None and band.expected_retransmits > 0 and confirmed(s):
            entry[1] += 1
    def sort_key(key):
        band = order[key]
        return (key[1] != "transaction", band is None, band.low_ms if band else 0.0)
    out = []
    for key in sorted(counts, key=sort_key):
        band = order[key]
        count, conf = counts[key]
        base = connects if key[1] == "connect" else transactions
        out.append(TailBucket(
            signature=key[0], phase=key[1], threshold_ms=round(band.low_ms, 3) if band else slow_threshold_ms,
            upper_ms=round(band.high_ms, 3) if band and band.high_ms is not None else None,
            count=count, share=count / base if base else 0.0, confirmed_by_tcp_info=conf,
            expected_retransmits=band.expected_retransmits if band else 0))
    return tuple(out)


def implied_retransmits(tails: Iterable[TailBucket]) -> int:
    """Retransmissions the timer tails imply: what TcpRetransSegs (plus
    TCPSynRetrans for connects) should have grown by, at least."""
    return sum(t.count * t.expected_retransmits for t in tails if sig.is_timeout(t.signature))
