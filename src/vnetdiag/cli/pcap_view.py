"""Terminal view and --filter of ``vnetdiag pcap``."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter

from vnetdiag.errors import UsageError
from vnetdiag.model.pcap import Conversation, PcapReport
from vnetdiag.report.summary import counted
from vnetdiag.report.tables import Col, fitted

_WORDS = ("tcp", "udp", "other", "retrans")


def parse_filter(expr: str) -> list[tuple[str, object]]:
    """'tcp host 10.0.0.1 port 80' -> [('proto','tcp'), ('host', ip), ('port', 80)]."""
    words = expr.split()
    terms: list[tuple[str, object]] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        if w == "and":
            i += 1
            continue
        if w in _WORDS:
            terms.append((w, None))
            i += 1
            continue
        if w in ("host", "port", "stream") and i + 1 < len(words):
            v = words[i + 1]
            try:
                value: object = ipaddress.ip_address(v) if w == "host" else int(v)
            except ValueError:
                raise UsageError(f"--filter: {w} needs {'an address' if w == 'host' else 'a number'}, not {v!r}",
                                 hint="e.g. --filter 'tcp host 198.51.100.1 port 5201'") from None
            terms.append((w, value))
            i += 2
            continue
        raise UsageError(f"--filter: cannot understand {words[i]!r}",
                         hint="terms: tcp, udp, other, retrans, host ADDR, port N, stream N (all must match)")
    return terms


def _split(ep: str) -> tuple[str, int | None]:
    if ep.startswith("["):
        addr, _, port = ep[1:].partition("]:")
        return addr, int(port)
    if ep.count(":") == 1:
        addr, port = ep.split(":")
        return addr, int(port)
    return ep, None


def _match(c: Conversation, terms) -> bool:
    for kind, value in terms:
        ends = [_split(c.a), _split(c.b)]
        if kind == "tcp" and c.proto != "tcp":
            return False
        if kind == "udp" and c.proto != "udp":
            return False
        if kind == "other" and c.proto in ("tcp", "udp"):
            return False
        if kind == "retrans" and not c.retransmissions:
            return False
        if kind == "host" and not any(ipaddress.ip_address(a) == value for a, _ in ends):
            return False
        if kind == "port" and not any(p == value for _, p in ends):
            return False
        if kind == "stream" and c.stream != value:
            return False
    return True


def apply_filter(report: PcapReport, terms) -> PcapReport:
    convs = tuple(c for c in report.conversations if _match(c, terms))
    streams = {c.stream for c in convs if c.stream is not None}
    flows = tuple(f for f in report.flows if f.stream in streams)
    retrans = tuple(r for r in report.retransmissions if r.stream in streams)
    sig = Counter(r.signature for r in retrans)
    return dataclasses.replace(report, conversations=convs, flows=flows, retransmissions=retrans,
                               signatures=dict(sig.most_common()))


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


# The tables' columns: key columns (addresses, flows) are never cut; ``drop``
# orders what a narrow terminal leaves out first.
CONVERSATION_COLUMNS = (
    Col(header="proto", drop=1), Col(header="A", key=True), Col(header="B", key=True),
    Col(header="pkts A→B", justify="right", key=True, drop=4), Col(header="bytes A→B", justify="right", key=True),
    Col(header="pkts B→A", justify="right", key=True, drop=5), Col(header="bytes B→A", justify="right", key=True),
    Col(header="start s", justify="right", drop=6), Col(header="dur s", justify="right", drop=3),
    Col(header="retrans", justify="right", key=True, drop=2))
FLOW_COLUMNS = (
    Col(header="stream", justify="right", key=True), Col(header="A", key=True), Col(header="B", key=True),
    Col(header="pkts", justify="right", drop=3), Col(header="retrans", justify="right", key=True),
    Col(header="fast", justify="right", drop=8), Col(header="spur", justify="right", drop=9),
    Col(header="dupack", justify="right", drop=7), Col(header="0win", justify="right", drop=6),
    Col(header="rst", justify="right", drop=1), Col(header="hs rtt µs", justify="right", drop=5),
    Col(header="rr p50 µs", justify="right", drop=4), Col(header="rr p99 µs", justify="right", drop=2),
    Col(header="signatures"))
RETRANS_COLUMNS = (
    Col(header="frame", justify="right", drop=4), Col(header="time s", justify="right", key=True),
    Col(header="flow", key=True), Col(header="seq", justify="right", drop=6),
    Col(header="len", justify="right", drop=5), Col(header="kind", drop=2), Col(header="attempt", justify="right", drop=7),
    Col(header="delay ms", justify="right", drop=1), Col(header="gap ms", justify="right", drop=3),
    Col(header="signature", key=True))


def render(report: PcapReport, console, *, top: int, flows: bool, retrans: bool) -> None:

    cap = report.capture
    console.print(f"[bold]{cap.path}[/bold]: {cap.format}{' (gzip)' if cap.compressed else ''}, "
                  f"{cap.packets} packets, {_bytes(cap.bytes_on_wire)}, {cap.duration_s:.3f} s"
                  + (f", {cap.skipped} skipped" if cap.skipped else "")
                  + (f", {cap.undecoded} not IP" if cap.undecoded else ""))
    convs = sorted(report.conversations, key=lambda c: -(c.bytes_ab + c.bytes_ba))
    shown = convs if top == 0 else convs[:top]
    rows = []
    for c in shown:
        proto = c.proto + (" (vxlan)" if c.tunnel else "") + (" tunnel" if c.vxlan_outer else "")
        rows.append((proto, c.a, c.b, str(c.packets_ab), _bytes(c.bytes_ab), str(c.packets_ba), _bytes(c.bytes_ba),
                     f"{c.start_s:.3f}", f"{c.duration_s:.3f}", str(c.retransmissions or "")))
    console.print(fitted(CONVERSATION_COLUMNS, rows, title_justify="left",
                         title=f"Conversations ({len(shown)} of {len(convs)}, largest first)"))
    if report.signatures:
        console.print(f"Retransmissions: {len(report.retransmissions)} ({counted(report.signatures)})")
    else:
        console.print("Retransmissions: none")
    suffered = [f for f in report.flows if f.retransmissions or f.resets or f.zero_windows]
    if flows or suffered:
        rows = report.flows if flows else suffered
        cells = []
        for f in rows[: top or None]:
            rr = f.request_response
            cells.append((str(f.stream), f.a, f.b, str(f.packets), str(f.retransmissions),
                          str(f.fast_retransmissions), str(f.spurious_retransmissions), str(f.dup_acks),
                          str(f.zero_windows), str(f.resets),
                          f"{f.handshake_rtt_us:.0f}" if f.handshake_rtt_us is not None else "",
                          f"{rr.p50_us:.0f}" if rr else "", f"{rr.p99_us:.0f}" if rr else "",
                          counted(f.signatures, max_parts=3, empty="")))
        console.print(fitted(FLOW_COLUMNS, cells, title_justify="left",
                             title="TCP flows" if flows else "TCP flows that suffered"))
    if retrans and report.retransmissions:
        cells = [(str(r.frame), f"{r.time_s:.6f}", r.flow, str(r.seq), str(r.length_bytes), r.kind,
                  str(r.attempt), "" if r.delay_ms is None else f"{r.delay_ms:.1f}",
                  "" if r.gap_ms is None else f"{r.gap_ms:.1f}", r.signature) for r in report.retransmissions]
        console.print(fitted(RETRANS_COLUMNS, cells, title="Retransmitted segments", title_justify="left"))
