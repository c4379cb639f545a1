"""Interface loss counters (stats64 drops and errors) and qdisc drops; a shaper's
overlimits as queueing (delay without loss)."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

# stats64 counters that count lost packets (rx_errors and rx_dropped of one
# device often count the same packets, so a device's count is its largest one).
LOSS_COUNTERS = ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors", "rx_missed_errors",
                 "rx_fifo_errors", "rx_over_errors", "tx_fifo_errors", "tx_aborted_errors")

name = "counter"
source = "counter"
weight = 0.35
confirm = ("clear the suspected cause and rerun: the tails and this counter must both stop; "
           "or watch it live with vnetdiag drops --device {device}")


def candidates(ctx: Context, out: Candidates) -> None:
    for d in ctx.delta.interfaces:
        if d.status not in ("present", "renamed"):
            continue
        ns = d.ref.netns_inode
        moves = {m.name: m.delta for m in d.stats if m.name in LOSS_COUNTERS and m.delta > 0}
        if moves:
            counter, n = max(moves.items(), key=lambda kv: kv[1])
            c = out.at(ns, d.name, "drop")
            c.direction = c.direction or counter.split("_", 1)[0]
            c.reason = c.reason or counter
            listed = ", ".join(f"{k} +{v}" for k, v in sorted(moves.items()))
            c.add(name, n, source, f"{d.name} in {ctx.name(ns)}: {listed}")
        qdrops = [(q, m.delta) for q in d.qdiscs for m in q.moves if m.name == "drops" and m.delta > 0]
        if qdrops:
            q, n = max(qdrops, key=lambda qn: qn[1])
            c = out.at(ns, d.name, "drop")
            c.direction, c.queue = "tx", f"{q.kind} {q.handle}"
            c.reason = c.reason if c.reason and not c.reason.endswith("dropped") else "qdisc drops"
            c.add(name, max(n, c.counts.get(name, 0)), source, f"qdisc {q.kind} {q.handle} on {d.name}: drops +{n}")
        over = [(q, m.delta) for q in d.qdiscs for m in q.moves
                if m.name == "overlimits" and m.delta > 0 and q.parent == "root"]
        if over:
            # A shaper holding packets back: delay without (necessarily) loss.
            q, n = max(over, key=lambda qn: qn[1])
            c = out.at(ns, d.name, "queueing", direction="tx", queue=f"{q.kind} {q.handle}",
                       reason="qdisc overlimits")
            c.add(name, n, source, f"qdisc {q.kind} {q.handle} on {d.name}: overlimits +{n} (packets held back), "
                                   f"backlog {q.backlog_packets} packets at the end")


def merge(ctx: Context, out: Candidates) -> None:
    pass
