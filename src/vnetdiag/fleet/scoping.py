"""An agent's view of kernel-wide records: only its own namespaces (pure).

The tracer sees every drop of the kernel. On a host whose kernel the agent
shares with others (the simulated hosts of the tests, or tenants a user may
not look at), drops placed in namespaces outside the agent's scope are
someone else's; a drop the tracer could not place (no device, or a name
found in several namespaces none of which is in scope) is left out too, so
that every host does not report every other host's losses.
"""

from __future__ import annotations

import dataclasses

from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.tracing import TraceAnalysis


def scoped_trace(analysis: TraceAnalysis, labels: set[str]) -> TraceAnalysis:
    """``analysis`` with only the drops, device rates and paths placed in ``labels``."""
    drops = []
    for d in analysis.drops:
        if d.netns is not None:
            if d.netns in labels:
                drops.append(d)
            continue
        mine = tuple(a for a in d.ambiguous if a in labels)
        if len(mine) == 1:
            drops.append(dataclasses.replace(d, netns=mine[0], ambiguous=()))
        elif mine:
            drops.append(dataclasses.replace(d, ambiguous=mine))
    return dataclasses.replace(
        analysis, drops=tuple(drops),
        devices=tuple(r for r in analysis.devices if r.netns in labels),
        paths=tuple(p for p in analysis.paths if any(n in labels for n in p.netns if n is not None)))


def scoped_drops(result: DropTraceResult, inodes: set[int]) -> DropTraceResult:
    """The eBPF backend's counts and records of the namespaces ``inodes`` only
    (it knows each drop's namespace exactly: skb->dev's)."""
    return dataclasses.replace(result, tallies=tuple(t for t in result.tallies if t.netns_inode in inodes),
                               packets=tuple(p for p in result.packets if p.netns_inode in inodes))
