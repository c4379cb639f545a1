"""A TX path that stopped: more packets joined a qdisc's backlog than left the
device (a busy but working queue sends many times what its backlog grows by)."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

name = "tx-stall"
source = "counter"
weight = 0.7  # a frozen queue is observed state, not an inference from counts
confirm = ("tc -s qdisc show dev {device}: the backlog keeps growing and Sent stays put; "
           "replacing the qdisc (or a link bounce) should release it")


def _root(qdiscs):
    return next((q for q in qdiscs if q.parent == "root" and not q.is_class), None)


def candidates(ctx: Context, out: Candidates) -> None:
    old = {i.interface.ref: i for i in ctx.bundle.before.interfaces}
    for now in ctx.bundle.after.interfaces:
        prev = old.get(now.interface.ref)
        if prev is None:
            continue
        q0, q1 = _root(prev.qdiscs), _root(now.qdiscs)
        if q0 is None or q1 is None or q1.handle != q0.handle:
            continue
        grown = q1.backlog_packets - q0.backlog_packets
        sent = now.stats.get("tx_packets", 0) - prev.stats.get("tx_packets", 0)
        if q1.backlog_packets == 0 or grown <= 0 or sent >= grown:
            continue
        i = now.interface
        c = out.at(i.ref.netns_inode, i.name, "tx-stall", direction="tx", queue=f"{q1.kind} {q1.handle}")
        c.reason = "qdisc backlog grows, tx_packets frozen"
        c.add(name, q1.backlog_packets, source, (
            f"qdisc {q1.kind} {q1.handle} on {i.name}: backlog {q0.backlog_packets} -> {q1.backlog_packets} "
            f"packets ({q1.backlog_bytes} bytes) while tx_packets moved by {sent}"))


def merge(ctx: Context, out: Candidates) -> None:
    # Drops counted at a stalled device are the stall's: one verdict, typed tx-stall.
    for (ns, dev, cause) in [k for k in out if k[2] == "tx-stall"]:
        out.merge((ns, dev, cause), (ns, dev, "drop"))
