"""Document and tables of `vnetdiag drops` when the eBPF backend ran."""

from __future__ import annotations

from dataclasses import asdict

from vnetdiag.analyze.drop_flows import FlowDrops, flow_counts, unplaced
from vnetdiag.cli.tracing_view import DROPS_SCHEMA
from vnetdiag.model.drops import DropTally, DropTraceResult, Flow, PacketDrop

MAX_FLOW_ROWS = 20


def _flow(f: Flow | None) -> dict | None:
    return asdict(f) if f is not None else None


def _tally(t: DropTally, duration_s: float) -> dict:
    return {"netns": t.netns, "netns_inode": t.netns_inode, "ifindex": t.ifindex, "device": t.device or None,
            "reason": t.reason, "location": t.location, "count": t.count,
            "rate_per_s": round(t.count / max(duration_s, 1e-9), 3), "ambiguous": []}


def _flow_row(f: FlowDrops) -> dict:
    return {"netns_inode": f.netns_inode, "ifindex": f.ifindex, "device": f.device, "reason": f.reason,
            "location": f.location, "outer": _flow(f.outer), "inner": _flow(f.inner), "count": f.count,
            "matched": f.matched, "first_ns": f.first_ns, "last_ns": f.last_ns}


def _packet(p: PacketDrop) -> dict:
    d = asdict(p)
    d["head"] = p.head.hex()
    d["ring"] = None if p.ring is None else {**asdict(p.ring), "occupied_entries": p.ring.occupied_entries}
    return d


def selected_packets(result: DropTraceResult, tallies: tuple[DropTally, ...]) -> tuple[PacketDrop, ...]:
    """The records of the selected counts (--netns, --device, --reason apply to records too)."""
    keys = {(t.netns_inode, t.ifindex, t.reason) for t in tallies}
    return tuple(p for p in result.packets if (p.netns_inode, p.ifindex, p.reason) in keys)


def document(result: DropTraceResult, tallies: tuple[DropTally, ...], *, packets: bool = True) -> dict:
    loss = result.loss
    chosen = selected_packets(result, tallies)
    return {"schema": DROPS_SCHEMA, "backend": result.backend, "note": result.note,
            "duration_s": round(result.duration_s, 3), "filter": result.filter,
            "records": len(result.packets), "records_lost": loss.lost, "records_suppressed": loss.suppressed,
            # The counts are kept in the kernel: only the drops it skipped the program for
            # are missing from them (events_missed; null when the kernel could not say).
            "events_read": sum(t.count for t in result.tallies), "events_lost": loss.lost,
            "events_missed": loss.missed,
            "lost_share": round(loss.lost / max(1, loss.lost + len(result.packets)), 6),
            "complete": loss.complete, "lost_by_cpu": {}, "missing_events": [],
            "unplaced": unplaced(result.tallies),
            "drops": [_tally(t, result.duration_s) for t in tallies],
            "flows": [_flow_row(f) for f in flow_counts(chosen)],
            "packets": [_packet(p) for p in chosen] if packets else []}


def _ft(f: Flow | None) -> str:
    if f is None:
        return "-"
    proto = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 132: "sctp"}.get(f.proto, str(f.proto))
    if f.sport or f.dport:
        a, b = (f"[{f.src}]" if f.ip_version == 6 else f.src), (f"[{f.dst}]" if f.ip_version == 6 else f.dst)
        return f"{proto} {a}:{f.sport} > {b}:{f.dport}"
    return f"{proto} {f.src} > {f.dst}"


def caption(result: DropTraceResult) -> str:
    loss = result.loss
    state = "complete" if loss.lost == 0 else f"INCOMPLETE: {loss.lost} records lost"
    parts = [f"{result.duration_s:.1f} s traced (ebpf)", f"{len(result.packets)} records, {state}",
             f"{loss.suppressed} drops not streamed (outside the filter and the sample)"]
    if loss.missed:
        parts.append(f"INCOMPLETE: {loss.missed} drops skipped by the kernel (another BPF program on that CPU)")
    if result.filter:
        parts.append(f"filter: {result.filter}")
    return "; ".join(parts)


def tables(result: DropTraceResult, tallies: tuple[DropTally, ...]) -> list:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="kernel drops", caption=escape(caption(result)))
    for col in ("netns", "ifindex", "device", "reason", "location", "count", "per s"):
        t.add_column(col, justify="right" if col in ("ifindex", "count", "per s") else "left")
    d = max(result.duration_s, 1e-9)
    for x in tallies:
        t.add_row(x.netns or (f"netns:{x.netns_inode}" if x.netns_inode else "?"), str(x.ifindex or "-"),
                  x.device or "-", x.reason, x.location, str(x.count), f"{x.count / d:.1f}")
    if not tallies:
        t.add_row("-", "-", "-", "no drops", "-", "0", "0")
    out: list = [t]
    chosen = selected_packets(result, tallies)
    flows = flow_counts(chosen)
    if flows:
        f = Table(title="dropped flows (records: filtered first, then the sample)")
        for col in ("", "device", "reason", "flow", "inner flow", "count"):
            f.add_column(col, justify="right" if col == "count" else "left")
        for row in flows[:MAX_FLOW_ROWS]:
            f.add_row("*" if row.matched else "", row.device or "-", row.reason, escape(_ft(row.outer)),
                      escape(_ft(row.inner)), str(row.count))
        out.append(f)
    rings = [p for p in chosen if p.ring is not None]
    if rings:
        r = Table(title="FULL_RING drops at tap queues: ring occupancy at the drop")
        for col in ("device", "queue", "occupied/size", "producer", "consumer", "slot busy"):
            r.add_column(col)
        for p in rings[:MAX_FLOW_ROWS]:
            q = p.ring
            r.add_row(p.device, str(q.queue_index), f"{q.occupied_entries}/{q.size_entries}", str(q.producer),
                      str(q.consumer_head), "yes" if q.slot_busy else "no")
        out.append(r)
    return out
