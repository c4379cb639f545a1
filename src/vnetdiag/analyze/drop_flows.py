"""Pure analyses of eBPF drop records: select counts, count drops per flow.

A flow here is what a person asks "which of my packets were dropped where":
(namespace inode, ifindex, reason, location function, outer 5-tuple, inner
5-tuple). Counting is over the streamed records, so it is exact for the
packets the filter selected (when nothing was lost) and a sample otherwise.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from vnetdiag.analyze.drops import location_function
from vnetdiag.model.drops import DropTally, Flow, PacketDrop


@dataclass(frozen=True, kw_only=True, slots=True)
class FlowDrops:
    netns_inode: int
    ifindex: int
    device: str
    reason: str
    location: str
    """Kernel function."""
    outer: Flow | None
    inner: Flow | None
    count: int
    matched: bool
    """The records matched the filter (False: from the sample of other drops)."""
    first_ns: int
    last_ns: int


def _key_flow(f: Flow | None) -> Flow | None:
    # Per-packet fields (flags, sequence) would split one flow into many.
    if f is None:
        return None
    return Flow(ip_version=f.ip_version, src=f.src, dst=f.dst, proto=f.proto, sport=f.sport, dport=f.dport)


def flow_counts(packets: Iterable[PacketDrop]) -> tuple[FlowDrops, ...]:
    counts: Counter = Counter()
    first: dict = {}
    last: dict = {}
    names: dict = {}
    for p in packets:
        k = (p.netns_inode, p.ifindex, p.reason, location_function(p.location), _key_flow(p.outer),
             _key_flow(p.inner), p.matched)
        counts[k] += 1
        first.setdefault(k, p.ts_ns)
        last[k] = p.ts_ns
        names.setdefault(k, p.device)
    return tuple(FlowDrops(netns_inode=k[0], ifindex=k[1], device=names[k], reason=k[2], location=k[3], outer=k[4],
                           inner=k[5], matched=k[6], count=n, first_ns=first[k], last_ns=last[k])
                 for k, n in sorted(counts.items(), key=lambda kv: (not kv[0][6], -kv[1], str(kv[0]))))


def filter_tallies(tallies: Iterable[DropTally], *, netns: str | None = None, device: str | None = None,
                   reason: str | None = None) -> tuple[DropTally, ...]:
    """Keep counts matching each glob; ``netns`` matches the label or ``netns:INODE``/the inode."""
    out = []
    for t in tallies:
        if netns is not None:
            forms = [t.netns or "", f"netns:{t.netns_inode}", str(t.netns_inode)]
            if not any(fnmatch.fnmatchcase(f, netns) for f in forms if f):
                continue
        if device is not None and not (t.device and fnmatch.fnmatchcase(t.device, device)):
            continue
        if reason is not None and not fnmatch.fnmatchcase(t.reason, reason.upper()):
            continue
        out.append(t)
    return tuple(out)


def unplaced(tallies: Iterable[DropTally]) -> int:
    """Drops whose namespace the kernel could not give (no device and no socket)."""
    return sum(t.count for t in tallies if t.netns_inode == 0)
