"""Kernel drop reasons for the watch (``tracer = true`` in the config).

The drop tracer (collect/tracewindow.py, event set "drops") runs for the whole
watch; each cycle takes the difference of its cumulative (namespace, device,
reason) counts. This is what sees faults that move no interface counter (an
iptables DROP, an MTU mismatch): the drop-anomaly detector gives each
(device, reason) its own baseline.

Not fed (yet): net:net_dev_xmit_timeout. The tx_stall detector has the rule
(``Observation.xmit_timeouts``), but the lab's veth and tap devices have no
TX watchdog, so nothing here could be tested, and the event is not in the
tracer's fast "drops" set.
"""

from __future__ import annotations

from vnetdiag.collect.tracewindow import TraceWindow


class WatchTracer:
    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        self.window = TraceWindow(events="drops", namespaces=list(namespaces) or None)
        self._counts: dict[tuple[str, str, str], int] = {}

    def start(self) -> None:
        self.window.start()

    def take(self) -> tuple[tuple[str, str, str, int], ...]:
        """(netns, device, reason, count) of drops since the previous call."""
        now: dict[tuple[str, str, str], int] = {}
        for d in self.window.snapshot().drops:
            if d.device is None or d.netns is None:
                continue  # not placed on one device: nothing to baseline per device
            key = (d.netns, d.device, d.reason)
            now[key] = now.get(key, 0) + d.count
        moved = tuple((*k, c - self._counts.get(k, 0)) for k, c in now.items() if c > self._counts.get(k, 0))
        self._counts = now
        return moved

    def close(self) -> None:
        self.window.stop()
