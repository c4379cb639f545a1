"""Kernel drop reasons for the watch (``tracer = true`` in the config).

The drop tracer (collect/droptrace.py) runs for the whole watch; each cycle
takes the difference of its cumulative (interface, reason) counts. This is
what sees faults that move no interface counter (an iptables DROP, an MTU
mismatch): the drop-anomaly detector gives each (device, reason) its own
baseline.

With the eBPF backend the kernel itself says which namespace and interface
each drop was on (skb->dev), so a busy host's other drops never land on a
watched device; the tracefs fallback places drops by device name from the
skb's earlier events, which is a guess on a busy host (the journal's start
line says which backend ran).

Not fed (yet): net:net_dev_xmit_timeout. The tx_stall detector has the rule
(``Observation.xmit_timeouts``), but the lab's veth and tap devices have no
TX watchdog, so nothing here could be tested, and the event is not in the
tracer's fast "drops" set.
"""

from __future__ import annotations

from vnetdiag.collect.droptrace import DropTrace
from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.watch import ReasonCount


class WatchTracer:
    def __init__(self, namespaces: tuple[str, ...] = (), *, interval_s: float = 1.0) -> None:
        # Kernel counts printed twice a cycle: each cycle sees the drops of the one before.
        self.trace = DropTrace(backend="auto", namespaces=list(namespaces) or None,
                               count_interval_ms=max(100, int(interval_s * 500)))
        self._counts: dict[tuple[int, int, str], int] = {}

    @property
    def backend(self) -> str | None:
        return self.trace.backend

    def start(self) -> None:
        self.trace.start()

    def take(self, snap: CounterSnapshot) -> tuple[ReasonCount, ...]:
        """Drops per (interface, reason) since the previous call; interfaces of
        ``snap`` only (a drop with no device, or on one not watched, has no
        per-device baseline)."""
        result = self.trace.snapshot()
        now: dict[tuple[int, int, str], int] = {}
        if result.backend == "ebpf":
            for t in result.tallies:
                key = (t.netns_inode, t.ifindex, t.reason)
                now[key] = now.get(key, 0) + t.count
        else:
            refs = {(ic.interface.netns_name, ic.interface.name): ic.interface.ref for ic in snap.interfaces}
            for d in result.analysis.drops:
                ref = refs.get((d.netns, d.device))
                if ref is not None:
                    key = (ref.netns_inode, ref.ifindex, d.reason)
                    now[key] = now.get(key, 0) + d.count
        watched = {(ic.interface.ref.netns_inode, ic.interface.ref.ifindex) for ic in snap.interfaces}
        moved = tuple(ReasonCount(netns_inode=k[0], ifindex=k[1], reason=k[2], count=c - self._counts.get(k, 0))
                      for k, c in now.items() if c > self._counts.get(k, 0) and k[:2] in watched)
        self._counts = now
        return moved

    def close(self) -> None:
        self.trace.stop()
