"""Documents and terminal tables for the tracing commands (drops, trace)."""

from __future__ import annotations

from dataclasses import asdict

from vnetdiag.model.tracing import Completeness, DropCount, TraceAnalysis
from vnetdiag.report.tables import Col, fitted

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


DROP_COLUMNS = (Col(header="netns", key=True), Col(header="device", key=True), Col(header="reason", key=True),
                Col(header="location", key=True, drop=2), Col(header="count", justify="right", key=True),
                Col(header="per s", justify="right", key=True, drop=1))


def drops_table(result: TraceAnalysis, drops: tuple[DropCount, ...]):
    rows = [(_ns(d.netns, d.ambiguous), d.device or "-", d.reason, d.location, str(d.count), f"{d.rate_per_s:.1f}")
            for d in drops] or [("-", "-", "no drops", "-", "0", "0")]
    return fitted(DROP_COLUMNS, rows, title="kernel drops",
                  caption=completeness_line(result.completeness, result.duration_s))


def report_tables(result: TraceAnalysis) -> list:
    out: list = [drops_table(result, result.drops)]
    if result.paths:
        rows = []
        for p in result.paths:
            parts = [f"{p.devices[0]}@{_ns(p.netns[0], ())}"]
            for h, dev, ns in zip(p.hops, p.devices[1:], p.netns[1:]):
                parts.append(f"-[{h.p50_us:.0f}/{h.p99_us:.0f}]-> {dev}@{_ns(ns, ())}")
            rows.append((str(p.count), p.end, " ".join(parts)))
        out.append(fitted((Col(header="count", justify="right", key=True), Col(header="end", key=True),
                           Col(header="path")), rows, title="most common packet paths (per-hop latency p50/p99 us)"))
    if result.devices:
        cols = (Col(header="device", key=True), Col(header="netns", key=True),
                Col(header="rx pkt/s", justify="right", key=True), Col(header="rx MB/s", justify="right", drop=3),
                Col(header="tx pkt/s", justify="right", key=True), Col(header="tx MB/s", justify="right", drop=4),
                Col(header="GRO frames", justify="right", drop=2), Col(header="GRO merged", justify="right", drop=1))
        rows = [(d.device, _ns(d.netns, ()), f"{d.rx_packets_per_s:.0f}", f"{d.rx_bytes_per_s / 1e6:.2f}",
                 f"{d.tx_packets_per_s:.0f}", f"{d.tx_bytes_per_s / 1e6:.2f}", str(d.gro_frames),
                 "-" if d.gro_share is None else f"{d.gro_share:.0%}") for d in result.devices]
        out.append(fitted(cols, rows, title="per-device rates from the trace"))
    if result.retransmits:
        cols = (Col(header="source", key=True), Col(header="destination", key=True),
                Col(header="retransmits", justify="right", key=True), Col(header="SYN-ACK", justify="right", key=True))
        rows = [(f"{r.saddr}:{r.sport}", f"{r.daddr}:{r.dport}", str(r.count), str(r.synack_count))
                for r in result.retransmits]
        out.append(fitted(cols, rows, title="TCP retransmits per connection"))
    if result.fdb_moves:
        cols = (Col(header="bridge", key=True), Col(header="mac", key=True), Col(header="vid", justify="right", drop=1),
                Col(header="from", key=True), Col(header="to", key=True))
        rows = [(m.bridge, m.mac, str(m.vid), m.from_device, m.to_device) for m in result.fdb_moves]
        out.append(fitted(cols, rows, title="bridge FDB moves"))
    return out
