"""Render a diagnosis: the terminal summary and the self-contained HTML report."""

from __future__ import annotations

import time
from html import escape
from importlib import resources

from vnetdiag import __version__
from vnetdiag.analyze.deltas import delta as counter_delta
from vnetdiag.model import signatures as sig
from vnetdiag.report import svg
from vnetdiag.report.summary import counted
from vnetdiag.report.units import fmt_us


us = fmt_us


def moved_counters(run, *, limit: int = 60) -> list[tuple[int, str, str, str, int]]:
    """(netns inode, namespace, device, counter, delta) for loss-related counters, largest first."""
    d = counter_delta(run.before, run.after)
    rows = []
    for i in d.interfaces:
        for m in i.stats:
            if any(k in m.name for k in ("drop", "error", "missed", "fifo")):
                rows.append((i.ref.netns_inode, i.netns_name, i.name, m.name, m.delta))
        for q in i.qdiscs:
            for m in q.moves:
                if m.name in ("drops", "overlimits", "requeues"):
                    rows.append((i.ref.netns_inode, i.netns_name, i.name, f"qdisc {q.kind} {q.handle} {m.name}",
                                 m.delta))
    for n in d.namespaces:
        for m in n.conntrack:
            rows.append((n.netns_inode, n.netns_name, "", f"conntrack {m.name}", m.delta))
        for section, m in n.snmp:
            if m.name in ("RetransSegs", "TCPSynRetrans", "TCPLossProbes", "ListenDrops", "ListenOverflows"):
                rows.append((n.netns_inode, n.netns_name, "", f"{section} {m.name}", m.delta))
    return sorted(rows, key=lambda r: -r[4])[:limit]


def split_by_path(rows, path) -> tuple[list, list]:
    """Counter rows in the path's namespaces, and the others' (other tenants'
    activity, which the verdicts do not rest on). Without a path, all are shown."""
    on_path = {h.netns_inode for h in path}
    if not on_path:
        return list(rows), []
    return [r for r in rows if r[0] in on_path], [r for r in rows if r[0] not in on_path]


def path_pictures(d) -> str:
    """Each direction of the path as Graphviz lays it out (topology/drawing.py),
    arrows the way the probe's packets go, the top verdict's device in red;
    a numbered list where Graphviz is not installed."""
    from vnetdiag.errors import MissingFeatureError
    from vnetdiag.system import graphviz
    from vnetdiag.topology.drawing import path_dot

    culprits = {(v.netns_inode, v.device) for v in d.verdicts[:1]}
    out = []
    for direction, title in (("forward", f"{d.source} → {d.target}"), ("reverse", f"{d.target} → {d.source}")):
        hops = [h for h in d.path if h.direction == direction]
        if not hops:
            continue
        try:
            picture = graphviz.inline(graphviz.svg(path_dot(hops, culprits=culprits)))
        except MissingFeatureError:
            picture = "<ol class=\"hops\">" + "".join(
                f"<li class=\"{'hop culprit' if (h.netns_inode, h.device) in culprits else 'hop'}\">"
                f"{escape(h.device)} <span class=\"sub\">{escape(h.netns)}</span></li>" for h in hops) + "</ol>"
        out.append(f'<h3>{escape(title)}</h3><div class="path-picture" data-direction="{direction}">{picture}</div>')
    return "".join(out) or "<p>path not resolved</p>"


def html(run) -> str:
    import jinja2

    d = run.diagnosis
    probe = run.probe or _NoProbe(d)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(resources.files("vnetdiag.report").joinpath("templates/diagnosis.html.j2").read_text())
    hs = run.handshake
    if hs is not None:  # a far end probed server-less: the handshakes' round trips, against the SYN timeout
        bins, marks = hs.histogram, ([(sig.SYN_RTO_MS * 1000, f"SYN RTO {sig.SYN_RTO_MS / 1000:g} s")]
                                     if hs.pattern == "tcp-syn" else [])
        tails = [end for _start, end in (run.bundle.tails if run.bundle is not None else ())]
    else:
        bins, marks = probe.histogram, [(probe.rto_min_ms * 1000, f"min RTO {probe.rto_min_ms:g} ms")]
        tails = [s.at_s for s in probe.slow]
    histogram = svg.log_histogram([(b.low_us, b.high_us, b.count) for b in bins], marks=marks)
    series = [("slow transactions", tails)]
    for name, times in _drop_times(run):
        series.append((name, times))
    note = ("drops are placed in time from the tracer's timestamps" if len(series) > 1 else
            "no traced drop with a timestamp in this window")
    on_path, elsewhere = split_by_path(moved_counters(run), d.path)
    s = d.symptom
    clean = (f"{s.transactions} transactions, p99 {us(s.p99_us)}, max {us(s.max_us)}, {s.tails} tails, "
             f"{s.retrans_segs} retransmitted segments; tracer {'complete' if d.trace_complete else 'incomplete or off'}.")
    return template.render(d=d, s=s, probe=probe, handshake=hs, us=us, version=__version__,
                           generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), histogram=histogram,
                           timeline=svg.timeline(series, duration_s=max(d.window_s, 0.001)), timeline_note=note,
                           path=path_pictures(d), counters=on_path, other_counters=elsewhere,
                           clean_figures=clean)


class _NoProbe:
    """Stands in for the probe result when B could not be reached."""

    def __init__(self, d) -> None:
        self.streams, self.tails, self.histogram, self.slow = d.symptom.errors, (), (), ()
        self.rto_min_ms = 200.0


def _drop_times(run) -> list[tuple[str, list[float]]]:
    """Drop times (seconds into the window) of the top verdicts that have them."""
    end = run.diagnosis.window_s
    series = [(f"drops {v.device or v.netns}", [t for t in v.drop_times_s if 0 <= t <= end])
              for v in run.diagnosis.verdicts[:3]]
    return [s for s in series if s[1]]


def terminal(run, console) -> None:
    """The summary: symptom, verdicts with evidence, the path with the culprit marked."""
    from vnetdiag.report.tables import Col, fitted

    d, probe = run.diagnosis, run.probe or _NoProbe(run.diagnosis)
    s = d.symptom
    hs = getattr(run, "handshake", None)
    if hs is not None:  # a far end (a VM's guest): server-less handshakes, not the request/response probe
        console.print(f"[bold]{d.source} -> {d.target}[/bold]  {d.pattern} to port {hs.port or '-'}, "
                      f"{d.window_s:.1f} s: {hs.attempts} attempts, answers "
                      f"{', '.join(f'{k} {v}' for k, v in sorted(hs.answers.items())) or 'none'}, "
                      f"{hs.timeouts} unanswered, p50 {us(s.p50_us)}, p99 {us(s.p99_us)}, max {us(s.max_us)}")
    elif run.probe is None:
        console.print(f"[bold]{d.source} -> {d.target}[/bold]  [red]unreachable[/red] over {d.window_s:.1f} s: "
                      f"{s.retrans_segs} retransmitted segments, {s.syn_retrans} SYN retransmits")
    if hs is None:
        console.print(f"[bold]{d.source} -> {d.target}[/bold]  {d.pattern} x{probe.streams} streams, "
                      f"{d.window_s:.1f} s: {s.transactions} transactions, p50 {us(s.p50_us)}, p99 {us(s.p99_us)}, "
                      f"max {us(s.max_us)}")
    tails = counted(s.tails_by_signature, count_first=True)
    console.print(f"tails: {tails}; TcpRetransSegs {s.retrans_segs}, SYN retransmits {s.syn_retrans}"
                  + (f", UDP lost {s.udp_lost}" if s.pattern == "udp-rr" else ""))
    if d.path:
        culprit = (d.verdicts[0].netns_inode, d.verdicts[0].device) if d.verdicts else None
        fwd = [f"[bold red]{h.device}[/bold red]" if (h.netns_inode, h.device) == culprit else h.device
               for h in d.path if h.direction == "forward"]
        console.print("path: " + " -> ".join(fwd))
    if d.backend:
        console.print(f"drop tracer: {d.backend}" + (" (each dropped packet's flow read from the kernel: the "
                                                     "probe's own lost packets are counted)" if d.backend == "ebpf"
                                                     else " (placed by device; the probe's own packets cannot be "
                                                          "told from other traffic's)"))
    if not d.measured:
        console.print(f"[bold red]the path was not measured[/bold red]: {d.shortfall}", markup=True)
    if not d.verdicts and d.measured:
        console.print(f"[green]no problem found on the path[/green]: {s.tails} tails, {s.retrans_segs} retransmitted "
                      f"segments, no drop counter moved on the path"
                      + (", the tracer saw no drop there" if d.trace_complete else ""))
    elif d.verdicts:  # not measured and nothing placed: the shortfall above is all there is
        rows = []
        for v in d.verdicts[:5]:
            where = f"{v.device or '(namespace)'}\n{v.netns or 'unknown namespace'}{' ' + v.direction if v.direction else ''}"
            if v.queue:
                where += f" {v.queue}"
            if not v.on_path:
                where += "\n(off the path)"
            evidence = "\n".join(f"[{e.source}] {e.text}" for e in v.evidence) + f"\nconfirm: {v.confirm}"
            count = f"{v.count}\n(the probe's)" if v.probe_packets else str(v.count)
            rows.append((str(v.rank), where, f"{v.cause}\n{v.reason or ''}", count, f"{v.confidence:.2f}",
                         evidence))
        cols = (Col(header="#", justify="right", key=True), Col(header="where", key=True), Col(header="cause", key=True),
                Col(header="count", justify="right", key=True), Col(header="conf.", justify="right", drop=1),
                Col(header="evidence"))
        console.print(fitted(cols, rows, show_lines=True,
                             styles=["bold" if v.rank == 1 else None for v in d.verdicts[:5]]))
    for note in d.notes:
        console.print(f"note: {note}")
