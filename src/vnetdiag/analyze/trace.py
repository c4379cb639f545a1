"""All tracing analyses over one stream of decoded events (live or recorded)."""

from __future__ import annotations

from collections.abc import Iterable

from vnetdiag.analyze.drops import DropCounter
from vnetdiag.analyze.paths import (DeviceCounters, DeviceMap, PathStats, PathTracker, RawPath, Resolver, entries_of,
                                    fdb_moves)
from vnetdiag.model import events as ev
from vnetdiag.model.tracing import Completeness, PacketPath, RetransmitCount, TraceAnalysis


class TraceAnalyzer:
    """Feed time-ordered batches of events; ``result()`` gives the TraceAnalysis.

    Memory is bounded: open skbs are aged out, paths are kept as counts plus a
    bounded sample, FDB and retransmit events are kept up to ``max_kept`` each.
    """

    def __init__(self, devmap: DeviceMap, *, max_kept: int = 100_000, **tracker_opts) -> None:
        self.resolver = Resolver(devmap)
        self.devmap = devmap
        self.drops = DropCounter(self.resolver)
        self.stats = PathStats(self.resolver)
        self.tracker = PathTracker(on_path=self._on_path, **tracker_opts)
        self.devices = DeviceCounters(self.resolver)
        self.max_kept = max_kept
        self.fdb: list[ev.FdbEvent] = []
        self.retrans: dict[tuple, list[int]] = {}
        self.events = 0

    def _on_path(self, path: RawPath) -> None:
        if path.drop is not None:
            self.drops.add(path.record())
        entries = entries_of(path.hops)
        self.stats.add(path, entries)
        self.devices.add(path, entries)

    def feed(self, events: list[ev.TraceEvent]) -> None:
        self.events += len(events)
        self.tracker.feed(events)
        for e in events:
            t = type(e)
            if t is ev.FdbEvent and len(self.fdb) < self.max_kept:
                self.fdb.append(e)
            elif t is ev.RetransmitEvent:
                c = self.retrans.setdefault((e.saddr, e.sport, e.daddr, e.dport), [0, 0])
                c[0] += 1
                c[1] += e.synack

    def feed_columns(self, cols) -> None:
        """A columnar batch (collect/tracecolumns.Columns, or anything with the
        same attributes): skb events through the fast join, the rest as records."""
        self.events += len(cols.ts_ns) + len(cols.others)
        self.tracker.feed_columns(cols.kind.tolist(), cols.skbaddr.tolist(), cols.device.tolist(),
                                  cols.ts_ns.tolist(), cols.len_bytes.tolist(), cols.names, cols.drops)
        if cols.others:
            self.events -= len(cols.others)
            self.feed(cols.others)

    def add_drop_paths(self, paths: Iterable[PacketPath]) -> None:
        """Dropped paths found without full decoding (the drops-only fast path)."""
        for p in paths:
            self.drops.add(p)

    def result(self, duration_s: float, completeness: Completeness) -> TraceAnalysis:
        self.tracker.age(everything=True)
        retrans = tuple(RetransmitCount(saddr=k[0], sport=k[1], daddr=k[2], dport=k[3], count=v[0],
                                        synack_count=v[1])
                        for k, v in sorted(self.retrans.items(), key=lambda kv: -kv[1][0]))
        return TraceAnalysis(duration_s=duration_s, completeness=completeness,
                             drops=self.drops.result(duration_s),
                             devices=self.devices.rates(duration_s),
                             paths=self.stats.summaries(), retransmits=retrans,
                             fdb_moves=fdb_moves(self.fdb), fdb_events=tuple(self.fdb[:1000]),
                             paths_aged=self.tracker.aged)
