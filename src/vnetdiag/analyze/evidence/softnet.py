"""A CPU's input backlog overflowing (softnet_stat's dropped): it serves every path through the host."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

name = "softnet"
source = "counter"
weight = 0.35
confirm = "grow net.core.netdev_max_backlog; /proc/net/softnet_stat's dropped column must stop"


def candidates(ctx: Context, out: Candidates) -> None:
    for s in ctx.delta.softnet:
        n = sum(m.delta for m in s.moves if m.name == "dropped")
        if n:
            c = out.at(None, None, "softnet-drop", reason="softnet dropped")
            c.add(name, c.counts.get(name, 0) + n, source, f"softnet_stat cpu{s.cpu}: dropped +{n}")


def merge(ctx: Context, out: Candidates) -> None:
    pass
