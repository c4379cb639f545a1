"""Terminal view of a compare: the paths side by side, the differences against
the first path with their intervals, and how each path is built."""

from __future__ import annotations

from rich.text import Text

from vnetdiag.model.compare import CompareResult, Difference, PathFigures
from vnetdiag.report.summary import counted
from vnetdiag.report.tables import Col, fitted
from vnetdiag.report.units import fmt_us

METRIC_NAMES = {"p50_us": "p50", "p99_us": "p99", "p999_us": "p99.9", "loss_rate": "loss", "rate_per_s": "rate"}


def loss_text(f: PathFigures) -> str:
    return f"{f.loss_rate:.3%} ({f.lost:,}/{f.trials:,})"


def value_text(metric: str, v: float | None, *, signed: bool = False) -> str:
    """A metric's value (or difference, ``signed``) in its unit."""
    if v is None:
        return "-"
    sign = ("+" if v > 0 else "-" if v < 0 else "±") if signed else ""
    if metric == "loss_rate":
        return f"{sign}{abs(v) * 100:.3g} pp" if signed else f"{v:.3%}"
    if metric == "rate_per_s":
        return f"{sign}{abs(v):,.0f}/s"
    return f"{sign}{fmt_us(abs(v))}"


def interval_text(d: Difference) -> str:
    if d.low is None or d.high is None:
        return "-"
    return f"[{value_text(d.metric, d.low, signed=True)}, {value_text(d.metric, d.high, signed=True)}]"


def figures_table(result: CompareResult):
    # The figures compared are never wrapped ("78.08" above "us" reads as two numbers).
    cols = (Col(header="path", key=True), Col(header="from -> to", key=True, drop=3),
            Col(header="to address", key=True, drop=6),
            Col(header="transactions", justify="right", drop=5), Col(header="rate/s", justify="right", key=True, drop=2),
            Col(header="p50", justify="right", key=True), Col(header="p99", justify="right", key=True),
            Col(header="p99.9", justify="right", key=True), Col(header="max", justify="right", key=True, drop=1),
            Col(header="loss", justify="right", key=True), Col(header="lost/trials", justify="right", drop=4),
            Col(header="tails by signature"))
    rows = []
    for f in result.paths:
        lat = f.latency
        rows.append((f.label, f"{f.source_netns} -> {f.target_netns}", f.server_address, f"{f.transactions:,}",
                     f"{f.rate_per_s:,.0f}", fmt_us(lat.get("p50")), fmt_us(lat.get("p99")), fmt_us(lat.get("p999")),
                     fmt_us(lat.max_us), f"{f.loss_rate:.3%}", f"{f.lost:,}/{f.trials:,}",
                     counted(f.tails, count_first=True) if f.tails else "none"))
    return fitted(cols, rows, title=f"{result.pattern} x{result.streams}, {result.rounds} rounds of "
                                    f"{result.slice_s:g} s slices per path, interleaved", title_justify="left")


def differences_table(result: CompareResult):
    inf = result.inference
    cols = (Col(header="path", key=True), Col(header="metric", key=True),
            Col(header="minus baseline", justify="right", key=True),
            Col(header=f"{inf.level:.0%} interval", justify="right", key=True), Col(header="differs", key=True))
    rows, styles = [], []
    for d in result.differences:
        rows.append((d.path, METRIC_NAMES[d.metric], value_text(d.metric, d.estimate, signed=True), interval_text(d),
                     "yes" if d.significant else "no"))
        styles.append("bold red" if d.significant and worse(d) else ("bold green" if d.significant else None))
    base = result.paths[0].label if result.paths else "?"
    return fitted(cols, rows, styles=styles, title_justify="left",
                  title=f"against {base}: {inf.method}, {inf.resamples} draws of {inf.rounds} rounds")


def worse(d: Difference) -> bool:
    """Higher latency or loss, or a lower rate, than the baseline."""
    return d.estimate < 0 if d.metric == "rate_per_s" else d.estimate > 0


def build_table(f: PathFigures):
    cols = (Col(header="#", justify="right", key=True), Col(header="namespace", key=True),
            Col(header="device", key=True), Col(header="kind"), Col(header="driver", drop=3),
            Col(header="rxq/txq", drop=4), Col(header="qdisc", drop=2), Col(header="offloads", drop=5),
            Col(header="VFs", justify="right", drop=6), Col(header="details", drop=1))
    hops = [h for h in f.build.hops if h.direction == "forward"] if f.build else []
    rows = [(str(k), h.netns, h.device, h.kind, h.driver, h.queues, h.qdisc or "-", ",".join(h.offloads) or "-",
             "-" if h.num_vf is None else str(h.num_vf), h.details) for k, h in enumerate(hops, 1)]
    back = len([h for h in f.build.hops if h.direction == "reverse"]) if f.build else 0
    caption = f"back: {back} devices (--json and --html show them)" if back else None
    notes = "; ".join(f.build.notes) if f.build and f.build.notes else ""
    return fitted(cols, rows, title=f"{f.label}: {f.source} -> {f.target}" + (f" ({notes})" if notes else ""),
                  title_justify="left", caption=caption, caption_justify="left")


def render(result: CompareResult, console) -> None:
    console.print(figures_table(result))
    console.print(differences_table(result))
    for f in result.paths:
        if f.build is not None:
            console.print(build_table(f))
        for s in f.shortfalls[:3]:
            console.print(Text(f"{f.label}: {s}", style="yellow"))
    for n in result.notes:
        console.print(Text(n, style="yellow"))
