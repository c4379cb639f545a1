"""Documents and terminal tables for the tracing commands (drops, trace)."""

from __future__ import annotations

from dataclasses import asdict

from vnetdiag.model.tracing import Completeness, DropCount, TraceAnalysis

DROPS_SCHEMA = "vnetdiag.drops/1"
REPORT_SCHEMA = "vnetdiag.trace-report/1"


def _completeness(c: Completeness) -> dict:
    return {"events_read": c.events_read, "events_lost": c.events_lost, "lost_share": round(c.lost_share, 6),
            "complete": c.complete, "lost_by_cpu": {str(k): v for k, v in c.lost_by_cpu.items()},
            "missing_events": list(c.missing_events)}


def _drop(d: DropCount) -> dict:
    return {"netns": d.netns, "device": d.device, "reason": d.reason, "location": d.location, "count": d.count,
            "rate_per_s": round(d.rate_per_s, 3), "ambiguous": list(d.ambiguous)}


def drops_document(result: TraceAnalysis, drops: tuple[DropCount, ...]) -> dict:
    return {"schema": DROPS_SCHEMA, "duration_s": round(result.duration_s, 3),
            **_completeness(result.completeness), "drops": [_drop(d) for d in drops]}


def report_document(result: TraceAnalysis, meta: dict) -> dict:
    return {"schema": REPORT_SCHEMA, "recording": meta, "duration_s": round(result.duration_s, 3),
            **_completeness(result.completeness),
            "drops": [_drop(d) for d in result.drops],
            "devices": [asdict(d) for d in result.devices],
            "paths": [{"devices": list(p.devices), "netns": list(p.netns), "count": p.count, "end": p.end,
                       "hops": [asdict(h) for h in p.hops]} for p in result.paths],
            "retransmits": [asdict(r) for r in result.retransmits],
            "fdb_moves": [asdict(m) for m in result.fdb_moves],
            "paths_aged": result.paths_aged}


def completeness_line(c: Completeness, duration_s: float) -> str:
    state = "complete" if c.complete else f"INCOMPLETE: {c.events_lost} events lost ({c.lost_share:.2%})"
    miss = f"; tracepoints missing on this kernel: {', '.join(c.missing_events)}" if c.missing_events else ""
    return f"{duration_s:.1f} s traced, {c.events_read} events read, {state}{miss}"


def _ns(netns: str | None, amb: tuple[str, ...]) -> str:
    if netns is not None:
        return netns
    return "?" + (f" ({'|'.join(amb)})" if amb else "")


def drops_table(result: TraceAnalysis, drops: tuple[DropCount, ...]):
    from rich.table import Table

    t = Table(title="kernel drops", caption=completeness_line(result.completeness, result.duration_s))
    for col in ("netns", "device", "reason", "location", "count", "per s"):
        t.add_column(col, justify="right" if col in ("count", "per s") else "left")
    for d in drops:
        t.add_row(_ns(d.netns, d.ambiguous), d.device or "-", d.reason, d.location, str(d.count),
                  f"{d.rate_per_s:.1f}")
    if not drops:
        t.add_row("-", "-", "no drops", "-", "0", "0")
    return t


def report_tables(result: TraceAnalysis) -> list:
    from rich.table import Table

    out: list = [drops_table(result, result.drops)]
    if result.paths:
        t = Table(title="most common packet paths (per-hop latency p50/p99 us)")
        t.add_column("count", justify="right")
        t.add_column("end")
        t.add_column("path")
        for p in result.paths:
            parts = [f"{p.devices[0]}@{_ns(p.netns[0], ())}"]
            for h, dev, ns in zip(p.hops, p.devices[1:], p.netns[1:]):
                parts.append(f"-[{h.p50_us:.0f}/{h.p99_us:.0f}]-> {dev}@{_ns(ns, ())}")
            t.add_row(str(p.count), p.end, " ".join(parts))
        out.append(t)
    if result.devices:
        t = Table(title="per-device rates from the trace")
        for col in ("device", "netns", "rx pkt/s", "rx MB/s", "tx pkt/s", "tx MB/s", "GRO frames", "GRO merged"):
            t.add_column(col, justify="left" if col in ("device", "netns") else "right")
        for d in result.devices:
            t.add_row(d.device, _ns(d.netns, ()), f"{d.rx_packets_per_s:.0f}", f"{d.rx_bytes_per_s / 1e6:.2f}",
                      f"{d.tx_packets_per_s:.0f}", f"{d.tx_bytes_per_s / 1e6:.2f}", str(d.gro_frames),
                      "-" if d.gro_share is None else f"{d.gro_share:.0%}")
        out.append(t)
    if result.retransmits:
        t = Table(title="TCP retransmits per connection")
        for col in ("source", "destination", "retransmits", "SYN-ACK"):
            t.add_column(col)
        for r in result.retransmits:
            t.add_row(f"{r.saddr}:{r.sport}", f"{r.daddr}:{r.dport}", str(r.count), str(r.synack_count))
        out.append(t)
    if result.fdb_moves:
        t = Table(title="bridge FDB moves")
        for col in ("bridge", "mac", "vid", "from", "to"):
            t.add_column(col)
        for m in result.fdb_moves:
            t.add_row(m.bridge, m.mac, str(m.vid), m.from_device, m.to_device)
        out.append(t)
    return out
