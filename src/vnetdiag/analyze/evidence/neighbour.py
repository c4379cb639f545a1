"""Packets that died waiting for a link-layer address (*no-neighbour*:
NEIGH_FAILED and the kernel's other NEIGH_* reasons) where ARP or ND had to
cross a stalled queue: the stall is the cause, the failed resolution its
consequence. On a fresh link, or with a neighbour entry gone stale, the
probe's first packets queue for the address; the request or its answer waits
behind the frozen queue like every other frame, and the kernel drops the
queued packets at the sender, far from the stall. A no-neighbour candidate
with no stall on the path in its broadcast domain stays a verdict: a
neighbour that is gone (a dead next hop) is its own cause."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import STALLS, Candidates, Context
from vnetdiag.model.diagnosis import Evidence

name = "neighbour"
source = "trace"
weight = 0.0  # folds only: adds no confidence of its own
confirm = ""


def candidates(ctx: Context, out: Candidates) -> None:
    pass


def merge(ctx: Context, out: Candidates) -> None:
    stalls = [k for k, c in out.items() if c.cause in STALLS and (k[0], k[1]) in ctx.path_keys]
    for key, c in list(out.items()):
        if c.cause != "no-neighbour" or c.netns is None or c.device is None:
            continue
        domain = ctx.broadcast_domain(c.netns, c.device)
        into = next((s for s in stalls if (s[0], s[1]) in domain), None)
        if into is None:
            continue
        what = f"{c.probe_packets} of the probe's packets" if c.probe_packets else f"{c.count} packets"
        out[into].evidence.append(Evidence(source=source, count=c.count, text=(
            f"{what} died at {ctx.where(c)} waiting for a link-layer address ({c.reason}): its ARP/ND "
            f"crosses {into[1]} in {ctx.name(into[0])}, whose queue is frozen")))
        out.merge(into, key)
