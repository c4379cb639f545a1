"""Drops per (namespace, device, reason, location), from dropped packet paths.

The device of a drop is the last device the packet was seen on (its last hop);
its namespace comes from the path's namespace resolution (analyze/paths.py).
Locations are grouped by function (``tbf_enqueue``), not by offset.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable

from vnetdiag.analyze.paths import Resolver, device_sequence, latest_life
from vnetdiag.model.tracing import MAX_DROP_TIMES, DropCount, PacketPath

_Key = tuple[str | None, str | None, str, str, tuple[str, ...]]


def location_function(location: str) -> str:
    """'tbf_enqueue+0x1c/0x2a0' -> 'tbf_enqueue' (module suffixes kept)."""
    return location.split("+", 1)[0]


class DropCounter:
    """Online aggregation of dropped paths; memory grows with distinct keys only."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.counts: Counter[_Key] = Counter()
        self.times: dict[_Key, list[int]] = {}
        self.total = 0

    def add(self, path: PacketPath) -> None:
        if path.drop is None:
            return
        self.total += 1
        seq = device_sequence(latest_life(path.hops))
        if seq:
            ns, cands = self.resolver.resolve(seq)
            netns, device, amb = ns[-1], seq[-1], (cands[-1] if ns[-1] is None and len(cands[-1]) > 1 else ())
        else:
            netns, device, amb = None, None, ()
        key = (netns, device, path.drop.reason, location_function(path.drop.location), amb)
        self.counts[key] += 1
        times = self.times.setdefault(key, [])
        if len(times) < MAX_DROP_TIMES:
            times.append(path.drop.ts_ns)

    def result(self, duration_s: float) -> tuple[DropCount, ...]:
        d = max(duration_s, 1e-9)
        return tuple(DropCount(netns=k[0], device=k[1], reason=k[2], location=k[3], count=n, rate_per_s=n / d,
                               ambiguous=k[4], times_ns=tuple(self.times.get(k, ())))
                     for k, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def filter_drops(drops: Iterable[DropCount], *, netns: str | None = None, device: str | None = None,
                 reason: str | None = None) -> tuple[DropCount, ...]:
    """Keep drops matching each given glob (netns matches also an ambiguous candidate)."""
    out = []
    for d in drops:
        if netns is not None:
            names = (d.netns,) if d.netns is not None else d.ambiguous
            if not any(n is not None and fnmatch.fnmatchcase(n, netns) for n in names):
                continue
        if device is not None and not (d.device and fnmatch.fnmatchcase(d.device, device)):
            continue
        if reason is not None and not fnmatch.fnmatchcase(d.reason, reason.upper()):
            continue
        out.append(d)
    return tuple(out)
