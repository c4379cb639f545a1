"""Packet paths: join trace events by skb address (seed 003), with bounded memory.

Each device event (receive, queue, xmit, GRO) appends a hop to the live entry
of its skb address; consume_skb or kfree_skb closes it as a PacketPath.
Entries never closed are aged out (oldest first) after ``max_age_ns`` or when
more than ``max_live`` are open. Device names are turned into namespaces with
a device map: a name found in one namespace is certain; otherwise the
neighbouring hops decide (same namespace, or the two ends of a veth pair), and
when nothing decides the hop keeps ``netns=None`` and the candidates are known.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from vnetdiag.model import events as ev
from vnetdiag.model.tracing import DeviceRate, DeviceRef, FdbMove, Hop, HopLatency, PacketPath, PathSummary

DeviceMap = Mapping[str, tuple[DeviceRef, ...]]

_KIND = {ev.ReceiveEvent: "rx", ev.QueueEvent: "queue", ev.XmitEvent: "xmit", ev.GroEvent: "gro"}


def resolve_namespaces(devices: tuple[str, ...], devmap: DeviceMap) -> tuple[tuple[str | None, ...],
                                                                                  tuple[tuple[str, ...], ...]]:
    """Namespace of each device along a path (None if undecided) and each one's candidates."""
    cands = [tuple(sorted({r.netns for r in devmap.get(d, ())})) for d in devices]
    ns: list[str | None] = [c[0] if len(c) == 1 else None for c in cands]

    def linked(i: int, j: int, cand: str) -> bool:
        # device i in namespace cand is next to device j (already placed in ns[j]).
        if ns[j] == cand:
            return True
        for r in devmap.get(devices[i], ()):
            if r.netns == cand and r.peer_netns == ns[j] and r.peer_name == devices[j]:
                return True
        for r in devmap.get(devices[j], ()):
            if r.netns == ns[j] and r.peer_netns == cand and r.peer_name == devices[i]:
                return True
        return False

    changed = True
    while changed:
        changed = False
        for i, c in enumerate(cands):
            if ns[i] is not None or len(c) < 2:
                continue
            for j in (i - 1, i + 1):
                if 0 <= j < len(devices) and ns[j] is not None:
                    fits = [x for x in c if linked(i, j, x)]
                    if len(fits) == 1:
                        ns[i] = fits[0]
                        changed = True
                        break
    return tuple(ns), tuple(cands)


def entry_hops(hops: Iterable[Hop]) -> list[Hop]:
    """The hop at which the packet entered each device along its path.

    Consecutive events on one device (queue then xmit) are one visit, and an
    xmit on a device already visited is the return of a nested transmit (a
    vxlan device's xmit completes after its underlay's), not a new visit.
    """
    out: list[Hop] = []
    seen: set[str] = set()
    for h in hops:
        if out and out[-1].device == h.device:
            continue
        if h.kind == "xmit" and h.device in seen:
            continue
        out.append(h)
        seen.add(h.device)
    return out


RawHop = tuple[str, str, int, int]
"""(device, kind, ts_ns, len_bytes): a hop in the tracker's light form."""


def entries_of(hops: Iterable[RawHop]) -> list[RawHop]:
    """entry_hops on light hops (the hot path)."""
    out: list[RawHop] = []
    seen: set[str] = set()
    for h in hops:
        if out and out[-1][0] == h[0]:
            continue
        if h[1] == "xmit" and h[0] in seen:
            continue
        out.append(h)
        seen.add(h[0])
    return out


class RawPath(NamedTuple):
    """A finished path as the tracker emits it: hops are light tuples, so the
    statistics can count millions of paths; ``record()`` gives the PacketPath."""

    skbaddr: int
    hops: list
    end: str
    end_ts_ns: int
    drop: ev.DropEvent | None = None

    def record(self) -> PacketPath:
        return PacketPath(skbaddr=self.skbaddr, end=self.end, end_ts_ns=self.end_ts_ns, drop=self.drop,
                          hops=tuple(Hop(device=d, netns=None, kind=k, ts_ns=t, len_bytes=n)
                                     for d, k, t, n in self.hops))


def latest_life(hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
    """The hops since the address last entered a device it had entered the same
    way before (an earlier skb freed where no tracepoint fires); see PathTracker."""
    seen: set[tuple[str, str]] = set()
    for i in range(len(hops) - 1, -1, -1):
        key = (hops[i].device, hops[i].kind)
        if key in seen:
            return hops[i + 1:]
        seen.add(key)
    return hops


def device_sequence(hops: Iterable[Hop]) -> tuple[str, ...]:
    """Devices in the order the packet entered them (see entry_hops)."""
    return tuple(h.device for h in entry_hops(hops))


class Resolver:
    """Caches namespace resolution per device sequence."""

    def __init__(self, devmap: DeviceMap) -> None:
        self.devmap = devmap
        self._cache: dict[tuple[str, ...], tuple] = {}

    def resolve(self, devices: tuple[str, ...]):
        r = self._cache.get(devices)
        if r is None:
            r = self._cache[devices] = resolve_namespaces(devices, self.devmap)
        return r

    def with_netns(self, path: PacketPath) -> PacketPath:
        seq = device_sequence(path.hops)
        ns, _ = self.resolve(seq)
        where: dict[str, str | None] = {}
        for dev, n in zip(seq, ns):
            where.setdefault(dev, n)
        hops = tuple(Hop(device=h.device, netns=where.get(h.device), kind=h.kind, ts_ns=h.ts_ns,
                         len_bytes=h.len_bytes) for h in path.hops)
        return PacketPath(skbaddr=path.skbaddr, hops=hops, end=path.end, end_ts_ns=path.end_ts_ns, drop=path.drop)


class PathTracker:
    """Online skb join. Feed events in (roughly) time order; every finished
    path (consumed, dropped, or aged out) is handed to ``on_path`` as a RawPath."""

    def __init__(self, *, max_live: int = 200_000, max_age_ns: int = 2_000_000_000,
                 on_path=None) -> None:
        self.max_live = max_live
        self.max_age_ns = max_age_ns
        self.on_path = on_path
        self.live: dict[int, list[RawHop]] = {}
        self.seen: dict[int, set[tuple[str, str]]] = {}
        """(device, kind) pairs of each live entry, to notice an untraced reuse."""
        self.aged = 0
        self.now_ns = 0
        self._since_age = 0

    def feed(self, events: Iterable[ev.TraceEvent]) -> None:
        live = self.live
        kinds = _KIND
        emit = self.on_path
        for e in events:
            t = type(e)
            kind = kinds.get(t)
            if kind is not None:
                self._hop(e.skbaddr, (e.device, kind, e.ts_ns, e.len_bytes))
            elif t is ev.ConsumeEvent or t is ev.DropEvent or t is ev.DeliverEvent:
                hops = live.pop(e.skbaddr, None)
                self.seen.pop(e.skbaddr, None)
                if emit is not None:
                    dropped = t is ev.DropEvent
                    if hops or dropped:
                        end = "dropped" if dropped else "delivered" if t is ev.DeliverEvent else "consumed"
                        emit(RawPath(e.skbaddr, hops or [], end, e.ts_ns, e if dropped else None))
            else:
                continue
            self.now_ns = e.ts_ns
        self._since_age += 1
        if self._since_age >= 8 or len(live) > self.max_live:
            self._since_age = 0
            self.age()

    def _hop(self, addr: int, hop: RawHop) -> None:
        hops = self.live.get(addr)
        key = (hop[0], hop[1])
        if hops is None:
            self.live[addr] = [hop]
            self.seen[addr] = {key}
        elif key in self.seen[addr]:
            self._new_life(addr, hop)
        else:
            hops.append(hop)
            self.seen[addr].add(key)

    def _new_life(self, addr: int, hop: RawHop) -> None:
        """The address entered a device it had already entered the same way: the
        skb was freed by a path without a tracepoint and the address reused."""
        hops = self.live.pop(addr)
        if self.on_path is not None:
            self.on_path(RawPath(addr, hops, "untraced", hops[-1][2]))
        self.live[addr] = [hop]  # re-inserted: the newest entry for ageing
        self.seen[addr] = {(hop[0], hop[1])}

    def feed_columns(self, kind: list[int], skbaddr: list[int], device: list[int], ts_ns: list[int],
                     len_bytes: list[int], names: list[str], drops: Mapping[int, ev.DropEvent]) -> None:
        """The same join on a time-ordered columnar batch (kind codes index
        model.events.SKB_KINDS, device indexes ``names``, ``drops`` maps the
        rows of kind 'drop' to their DropEvent)."""
        live = self.live
        seen = self.seen
        emit = self.on_path
        hop_kinds = ev.SKB_KINDS[:4]
        n_hop = len(hop_kinds)
        drop_code = ev.SKB_KINDS.index("drop")
        deliver_code = ev.SKB_KINDS.index("deliver")
        for i, (k, a, d, t, n) in enumerate(zip(kind, skbaddr, device, ts_ns, len_bytes)):
            if k < n_hop:
                dev = names[d]
                kn = hop_kinds[k]
                hops = live.get(a)
                if hops is None:
                    live[a] = [(dev, kn, t, n)]
                    seen[a] = {(dev, kn)}
                else:
                    key = (dev, kn)
                    s = seen[a]
                    if key in s:
                        self._new_life(a, (dev, kn, t, n))
                    else:
                        hops.append((dev, kn, t, n))
                        s.add(key)
            else:
                hops = live.pop(a, None)
                seen.pop(a, None)
                if emit is not None:
                    if k == drop_code:
                        emit(RawPath(a, hops or [], "dropped", t, drops[i]))
                    elif hops:
                        emit(RawPath(a, hops, "delivered" if k == deliver_code else "consumed", t))
        if ts_ns:
            self.now_ns = ts_ns[-1]
        self._since_age += 1
        if self._since_age >= 8 or len(live) > self.max_live:
            self._since_age = 0
            self.age()

    def age(self, *, everything: bool = False) -> None:
        live = self.live
        limit = self.now_ns - self.max_age_ns
        while live:
            addr = next(iter(live))
            hops = live[addr]
            if not everything and len(live) <= self.max_live and hops[0][2] >= limit:
                break
            del live[addr]
            self.seen.pop(addr, None)
            self.aged += 1
            if self.on_path is not None:
                self.on_path(RawPath(addr, hops, "aged", hops[-1][2]))


class PathStats:
    """Counts of device sequences and per-hop latency samples (bounded per hop)."""

    def __init__(self, resolver: Resolver, *, samples_per_hop: int = 20_000, keep: int = 200) -> None:
        self.resolver = resolver
        self.samples_per_hop = samples_per_hop
        self.keep = keep
        self.examples: list[PacketPath] = []
        self.counts: Counter[tuple[tuple[str, ...], str]] = Counter()
        self.latency: dict[tuple[str, ...], list[list[int]]] = {}

    def add(self, path: RawPath, entries: list[RawHop] | None = None) -> None:
        if not path.hops:
            return
        if entries is None:
            entries = entries_of(path.hops)
        seq = tuple(h[0] for h in entries)
        self.counts[(seq, path.end)] += 1
        if len(self.examples) < self.keep and len(seq) > 1 and path.end != "aged":
            self.examples.append(self.resolver.with_netns(path.record()))
        firsts = [h[2] for h in entries]
        lat = self.latency.get(seq)
        if lat is None:
            lat = self.latency[seq] = [[] for _ in range(len(seq) - 1)]
        for i in range(len(seq) - 1):
            if len(lat[i]) < self.samples_per_hop:
                lat[i].append(firsts[i + 1] - firsts[i])

    def summaries(self, *, top: int = 20, min_hops: int = 2) -> tuple[PathSummary, ...]:
        """The ``top`` most common paths of at least ``min_hops`` devices that
        touch the mapped namespaces (paths placed nowhere are other traffic)."""
        out = []
        for (seq, end), count in self.counts.most_common():
            if len(seq) < min_hops or end == "aged":
                continue
            ns, _ = self.resolver.resolve(seq)
            if all(n is None for n in ns):
                continue
            hops = []
            for i, samples in enumerate(self.latency.get(seq, [])):
                if not samples:
                    continue
                a = np.asarray(samples, dtype=np.float64) / 1000.0
                hops.append(HopLatency(from_device=seq[i], to_device=seq[i + 1], count=len(a),
                                       p50_us=float(np.percentile(a, 50)), p99_us=float(np.percentile(a, 99)),
                                       max_us=float(a.max())))
            out.append(PathSummary(devices=seq, netns=ns, count=count, hops=tuple(hops), end=end))
            if len(out) >= top:
                break
        return tuple(out)


class DeviceCounters:
    """Per-device packets and bytes seen in the trace, and GRO input frames.

    Counted from finished packet paths, so each device is placed in its
    namespace by the path's resolution; (None, name) collects hops of an
    ambiguous name the path could not place.
    """

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.rx: dict[tuple[str | None, str], list[int]] = defaultdict(lambda: [0, 0])
        self.tx: dict[tuple[str | None, str], list[int]] = defaultdict(lambda: [0, 0])
        self.gro: Counter[tuple[str | None, str]] = Counter()

    def add(self, path: RawPath, entries: list[RawHop] | None = None) -> None:
        seq = tuple(h[0] for h in (entries_of(path.hops) if entries is None else entries))
        ns, _ = self.resolver.resolve(seq)
        where = dict(zip(seq, ns))
        for dev, kind, _ts, n in path.hops:
            key = (where.get(dev), dev)
            if kind == "rx":
                c = self.rx[key]
            elif kind == "xmit":
                c = self.tx[key]
            elif kind == "gro":
                self.gro[key] += 1
                continue
            else:
                continue
            c[0] += 1
            c[1] += n

    def rates(self, duration_s: float) -> tuple[DeviceRate, ...]:
        d = max(duration_s, 1e-9)
        out = []
        for key in sorted(set(self.rx) | set(self.tx) | set(self.gro), key=lambda k: (k[1], k[0] or "")):
            rxp, rxb = self.rx.get(key, (0, 0))
            txp, txb = self.tx.get(key, (0, 0))
            g = self.gro.get(key, 0)
            share = max(0.0, 1.0 - rxp / g) if g else None
            out.append(DeviceRate(device=key[1], netns=key[0], rx_packets_per_s=rxp / d, rx_bytes_per_s=rxb / d,
                                  tx_packets_per_s=txp / d, tx_bytes_per_s=txb / d, gro_frames=g, gro_share=share))
        return tuple(out)


def fdb_moves(events: Iterable[ev.FdbEvent]) -> tuple[FdbMove, ...]:
    """MAC addresses that a bridge learned on one port and then on another."""
    where: dict[tuple[str, str, int], str] = {}
    out = []
    for e in events:
        if e.kind == "delete":
            where.pop((e.bridge, e.mac, e.vid), None)
            continue
        key = (e.bridge, e.mac, e.vid)
        prev = where.get(key)
        if prev is not None and prev != e.device:
            out.append(FdbMove(bridge=e.bridge, mac=e.mac, vid=e.vid, from_device=prev, to_device=e.device,
                               ts_ns=e.ts_ns))
        where[key] = e.device
    return tuple(out)
