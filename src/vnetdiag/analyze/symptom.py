"""The symptom: a probe result reduced to the numbers verdicts are compared with."""

from __future__ import annotations

from vnetdiag.model.diagnosis import Symptom


def symptom_of(result, *, pattern: str, streams: int, tcp_moves: dict[str, int] | None = None) -> Symptom:
    """Reduce a ProbeResult (None: the probe could not run) to the numbers verdicts
    are compared with. ``tcp_moves``: RetransSegs/TCPSynRetrans deltas of the two
    endpoints' namespaces from the counters, used when the probe has none."""
    moves = tcp_moves or {}
    if result is None:
        return Symptom(pattern=pattern, transactions=0, p50_us=0.0, p99_us=0.0, max_us=0.0, tails=0,
                       retrans_segs=moves.get("RetransSegs", 0), syn_retrans=moves.get("TCPSynRetrans", 0),
                       errors=streams)
    tails = {t.signature: t.count for t in result.tails if t.count}
    retrans_tails = sum(t.count for t in result.tails if t.expected_retransmits >= 1)
    tcp = result.tcp
    retrans = syn = 0
    if tcp is not None:
        retrans = tcp.retrans_segs_delta + max(tcp.server_retrans_segs_delta or 0, 0)
        syn = tcp.syn_retrans_delta + max(tcp.server_syn_retrans_delta or 0, 0)
    else:
        retrans, syn = moves.get("RetransSegs", 0), moves.get("TCPSynRetrans", 0)
    lat = result.latency
    return Symptom(pattern=result.pattern, transactions=result.transactions, p50_us=lat.get("p50"),
                   p99_us=lat.get("p99"), max_us=lat.max_us, tails=retrans_tails, tails_by_signature=tails,
                   retrans_segs=retrans, syn_retrans=syn, udp_lost=result.udp.lost if result.udp else 0,
                   errors=result.errors)
