"""Terminal rendering of a ProbeResult: percentiles, a log-scale histogram, the
tail table, TCP counters, and per-stream rates."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from vnetdiag.model.probe import LatencyStats, ProbeResult
from vnetdiag.report.tables import Col, fitted
from vnetdiag.report.units import edge_us, fmt_us

_BAR = 40


_edge = edge_us


def percentile_table(stats: LatencyStats, title: str) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("")
    for pct in stats.percentiles:
        table.add_column(pct.name, justify="right")
    table.add_row("latency", *(fmt_us(pct.latency_us) for pct in stats.percentiles))
    table.add_row(Text("samples at or above", style="dim"),
                  *(Text(f"{pct.samples_beyond:,}", style="dim") for pct in stats.percentiles))
    return table


def histogram_lines(result: ProbeResult) -> list[Text]:
    """Bars whose length is log10 of the count, so 3 samples at 200 ms are visible
    next to a million at 20 us (seed 001's figure, turned sideways)."""
    bins = result.histogram
    if not bins:
        return []
    top = max(b.count for b in bins)
    scale = math.log10(top + 1) or 1.0
    lines = [Text("latency histogram (log-scale counts)", style="bold")]
    for b in bins:
        length = round(_BAR * math.log10(b.count + 1) / scale) if b.count else 0
        style = "red" if b.low_us >= 0.9 * result.rto_min_ms * 1000 else "cyan"
        line = Text(f"{_edge(b.low_us):>8} - {_edge(b.high_us):<8} ")
        line.append("█" * length, style=style)
        line.append(f" {b.count:,}" if b.count else "")
        lines.append(line)
    return lines


def tail_table(result: ProbeResult):
    if not result.tails:
        return None
    cols = (Col(header="signature", key=True), Col(header="phase", drop=2), Col(header="band", key=True, drop=3),
            Col(header="count", justify="right", key=True), Col(header="share", justify="right", key=True, drop=1),
            Col(header="confirmed by TCP_INFO", justify="right"))
    rows = []
    for t in result.tails:
        band = f"{t.threshold_ms:g}-{t.upper_ms:g} ms" if t.upper_ms else f">= {t.threshold_ms:g} ms"
        conf = f"{t.confirmed_by_tcp_info}/{t.count}" if t.expected_retransmits else "-"
        style = "red" if t.expected_retransmits else None
        rows.append((Text(t.signature, style=style), t.phase, band, f"{t.count:,}", f"{t.share:.4%}", conf))
    return fitted(cols, rows, title=f"slow transactions (>= {result.slow_threshold_ms:g} ms) by timer signature "
                                    f"(rto_min {result.rto_min_ms:g} ms from {result.rto_min_source})",
                  title_justify="left", box=None, pad_edge=False)


def stream_table(result: ProbeResult, limit: int = 32) -> Table | None:
    rows = result.per_stream
    if len(rows) <= 1:
        return None
    starved = [s for s in rows if s.starved]
    shown = rows if len(rows) <= limit else starved
    table = Table(title=f"per stream ({len(starved)} starved)" if len(rows) <= limit else
                  f"per stream: {len(rows)} streams, showing the {len(starved)} starved",
                  title_justify="left", box=None, pad_edge=False)
    for col in ("stream", "worker", "transactions", "rate/s", "p50", "p99", "max", "errors", ""):
        table.add_column(col, justify="right" if col not in ("",) else "left")
    for s in shown:
        table.add_row(str(s.stream), str(s.worker), f"{s.transactions:,}", f"{s.rate_per_s:,.0f}",
                      fmt_us(s.p50_us), fmt_us(s.p99_us), fmt_us(s.max_us), str(s.errors),
                      Text("STARVED", style="bold red") if s.starved else "")
    return table


def render(result: ProbeResult, console) -> None:
    r = result
    where = f" from netns {r.netns}" if r.netns else ""
    pace = f", paced at {r.rate_target_per_s:g}/s" if r.rate_target_per_s else ""
    head = (f"vnetdiag probe {r.pattern} to {r.target} port {r.port}{where}: {r.streams} stream(s), "
            f"{r.workers} worker(s), {r.duration_s:.1f} s measured after {r.warmup_s:g} s warm-up{pace}")
    console.print(Text(head, style="bold"))
    if r.interrupted:
        console.print(Text("interrupted: partial results", style="yellow"))
    if r.shortfall:
        console.print(Text(f"the probe did not measure the path: {r.shortfall}", style="bold red"))
    console.print(f"transactions {r.transactions:,}   rate {r.rate_per_s:,.0f}/s   errors {r.errors:,}")
    console.print()
    title = "latency (from intended send time)" if r.rate_target_per_s else "latency"
    console.print(percentile_table(r.latency, title))
    if r.latency_uncorrected is not None:
        console.print(percentile_table(r.latency_uncorrected, "latency, uncorrected (from actual send time)"))
    if r.connect is not None:
        console.print(percentile_table(r.connect, "connect time"))
    console.print()
    for line in histogram_lines(r):
        console.print(line)
    console.print()
    tails = tail_table(r)
    if tails is not None:
        console.print(tails)
        if any(t.signature == "delayed-ack" for t in r.tails):
            console.print(Text("delayed-ack: TCP_INFO cannot confirm it; with TCP_NODELAY on both ends (as the "
                               "probe sets) a 40 ms wait is more likely scheduling than the ACK timer",
                               style="dim"))
    else:
        console.print(f"no transaction slower than {r.slow_threshold_ms:g} ms")
    if r.tcp is not None:
        t = r.tcp
        server = ""
        if t.server_retrans_segs_delta is not None:
            same = " (same namespace)" if t.server_netns_inode == t.netns_inode else ""
            server = f"; server's namespace{same}: +{t.server_retrans_segs_delta} / +{t.server_syn_retrans_delta}"
        console.print(f"TCP counters over the run: TcpRetransSegs +{t.retrans_segs_delta}, "
                      f"TCPSynRetrans +{t.syn_retrans_delta} (probe's namespace){server}")
        if r.tails:
            console.print(f"TCP_INFO across the slow transactions: {t.tcp_info_client_retrans} retransmissions "
                          f"by the probe, {t.tcp_info_server_retrans} by the server")
    if r.udp is not None:
        u = r.udp
        extra = f"; {u.requests_lost} requests never reached the server" if u.requests_lost is not None else ""
        console.print(f"udp: sent {u.sent:,}, answered {u.replies:,}, lost {u.lost:,}, late {u.late:,}, "
                      f"duplicate {u.duplicate:,}, reordered {u.reordered:,}{extra}")
    if r.bsp is not None:
        b = r.bsp
        console.print(f"bsp: {b.steps:,} steps of {b.ranks} ranks, compute {b.compute_ms:g} ms, "
                      f"communication p50 {fmt_us(b.communication.get('p50'))} p99 "
                      f"{fmt_us(b.communication.get('p99'))} max {fmt_us(b.communication.max_us)}; "
                      f"parallel efficiency {b.efficiency:.3f}")
    streams = stream_table(r)
    if streams is not None:
        console.print()
        console.print(streams)
    for note in r.notes:
        console.print(Text(f"note: {note}", style="yellow"))
