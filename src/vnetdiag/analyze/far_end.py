"""A far end vnetdiag cannot enter (a VM's guest, a bare address): the
handshake probe's symptom, and what is left to say when the host path lost
nothing. Pure: records in, records out.
"""

from __future__ import annotations

from collections.abc import Sequence

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.diagnosis import PathHop, Symptom, Verdict
from vnetdiag.model.handshake import HandshakeResult


def handshake_symptom(result: HandshakeResult | None, *, pattern: str, tcp_moves: dict[str, int] | None = None
                      ) -> Symptom:
    """The handshakes reduced to the numbers verdicts are compared with.

    tcp-syn: an answered attempt whose round trip implies SYN retransmissions is
    a tail; the SYN retransmissions are the kernel's count at the prober
    (TCPSynRetrans, which also counts those of unanswered attempts), or the
    implied ones when the counters did not move. icmp-echo: each unanswered
    echo is a lost request or reply (``udp_lost``, the symptom's lost-replies
    count). Unanswered attempts are errors either way: never a clean window."""
    moves = tcp_moves or {}
    if result is None:
        return Symptom(pattern=pattern, transactions=0, p50_us=0.0, p99_us=0.0, max_us=0.0, tails=0,
                       retrans_segs=moves.get("RetransSegs", 0), syn_retrans=moves.get("TCPSynRetrans", 0), errors=1)
    implied = {int(k): n for k, n in result.syn_retransmits.items()}
    tails = sum(n for k, n in implied.items() if k >= 1)
    syn = max(moves.get("TCPSynRetrans", 0), sum(k * n for k, n in implied.items()))
    lat = result.latency
    return Symptom(pattern=pattern, transactions=result.answered, p50_us=lat.get("p50") if lat.count else 0.0,
                   p99_us=lat.get("p99") if lat.count else 0.0, max_us=lat.max_us if lat.count else 0.0,
                   tails=tails, tails_by_signature={f"syn-retrans x{k}": n for k, n in sorted(implied.items()) if k},
                   retrans_segs=moves.get("RetransSegs", 0), syn_retrans=syn if pattern == "tcp-syn" else 0,
                   udp_lost=result.timeouts if pattern == "icmp-echo" else 0,
                   errors=result.timeouts + result.errors)


def front_device(path: Sequence[PathHop]) -> PathHop | None:
    """The last host device the probe's packets cross towards the far end: the
    tap or macvtap in front of a VM when the path reached one."""
    forward = [h for h in path if h.direction == "forward"]
    taps = [h for h in forward if h.kind in ("tap", "macvtap", "tun")]
    return (taps or forward or [None])[-1]


def far_shortfall(verdicts: Sequence[Verdict], symptom: Symptom, result: HandshakeResult | None,
                  path: Sequence[PathHop], before: CounterSnapshot | None = None,
                  after: CounterSnapshot | None = None) -> str | None:
    """Why the handshakes did not measure the path (the diagnosis's shortfall).

    Our own kernel refused every attempt (no route): nothing was measured. Or
    handshakes went unanswered (or needed retransmissions) and no verdict on the
    host path explains it: the loss is past the last host device, inside the
    guest; said with what that device handed on in the window (a tap's TX counts
    the frames QEMU read from it: fewer than the probe sent means its backend
    stopped reading, and the frames wait in the tap's queue until it fills).
    None when there is nothing to explain or a verdict on the path explains it."""
    if result is None:
        return None
    if result.errors and not result.answered and not result.timeouts:
        # Refused by our own kernel (no route, unreachable): nothing was measured, whatever the verdicts.
        return (f"none of the {result.attempts} {result.pattern} attempts to {result.target} could be sent: "
                "the kernel refused them (no route or unreachable: see the counters and notes)")
    if not (result.timeouts or symptom.losses) or any(v.on_path and not _others_only(v) for v in verdicts):
        return None
    front = front_device(path)
    where = f"{front.device} ({front.netns})" if front is not None else "the host's last device"
    lost = [f"{result.timeouts} of {result.attempts} {result.pattern} attempts unanswered"]
    if symptom.syn_retrans:
        lost.append(f"{symptom.syn_retrans} SYN retransmits")
    handed = _tx_packets(front, before, after) if front is not None else None
    sent = "SYNs" if result.pattern == "tcp-syn" else "echo requests"
    if handed is not None:
        # Each attempt sent at least one SYN: fewer frames read than that is a reader that stopped.
        lost.append(f"{front.device} handed on {handed} frames in the window"
                    + (f" (fewer than the {result.attempts} {sent} the probe sent it: its reader, the VM's backend, "
                       "stopped taking them; is QEMU paused or stuck?)" if handed < result.attempts else ""))
    return (f"the loss is past {where}, inside the guest, which vnetdiag cannot observe: {', '.join(lost)}; "
            f"no drop on the host path (check inside the guest, or the QEMU process: a paused VM answers nothing)")


def neighbour_note(verdicts: Sequence[Verdict], address: str) -> str | None:
    """A far end's packets that died waiting for its link-layer address
    (NEIGH_FAILED) point past the host too: the guest did not answer ARP or ND."""
    failed = [v for v in verdicts if v.reason == "NEIGH_FAILED" and v.probe_packets]
    if not failed:
        return None
    v = failed[0]
    return (f"{v.count} of the probe's packets died at {v.device} waiting for {address}'s link-layer address: "
            f"the far end did not answer ARP/ND, so the cause is likely past the host's last device, inside the "
            f"guest (a paused or stuck QEMU, a NIC that is down)")


def _others_only(v: Verdict) -> bool:
    """Only other traffic's packets were dropped there (eBPF flows told them apart):
    background noise such as IPv6 multicast, no explanation for the probe's loss."""
    return v.probe_packets == 0 and bool(v.background) and v.count <= v.background


def _tx_packets(hop: PathHop, before: CounterSnapshot | None, after: CounterSnapshot | None) -> int | None:
    """Frames the reader took from a tap (its TX: see analyze/guest_nic.py). A
    macvtap's counters say what reached its ring, not what was read: None."""
    if before is None or after is None or hop.kind not in ("tap", "tun"):
        return None

    def tx(snap: CounterSnapshot) -> int | None:
        return next((ic.stats.get("tx_packets") for ic in snap.interfaces
                     if ic.interface.ref.netns_inode == hop.netns_inode and ic.interface.name == hop.device), None)

    t0, t1 = tx(before), tx(after)
    return t1 - t0 if t0 is not None and t1 is not None and t1 >= t0 else None
