"""The watch loop: snapshot -> detectors -> journal -> actions, every interval.

Only the previous snapshot is kept; detectors keep per-subject state and drop
it when subjects disappear, so memory does not grow with churn. The latest
snapshot and the alert state are published (under a lock) for the exporter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vnetdiag.analyze import detectors as det
from vnetdiag.errors import VnetdiagError
from vnetdiag.export.metrics import WatchView
from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.namespaces import Namespace
from vnetdiag.model.watch import ActionResult, Observation, Transition, WatchConfig
from vnetdiag.watch.journal import AlertJournal
from vnetdiag.watch.responder import Responder


def namespace_filter(globs: tuple[str, ...]) -> Callable[[Namespace], bool] | None:
    """Namespaces to watch, in every accepted form (``system.netns.matcher``)."""
    from vnetdiag.naming import namespace_filter as named

    return named(list(globs), must_exist=False)


def local_port_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int] | None:
    try:
        lo, hi = path.read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class CycleResult:
    snapshot: CounterSnapshot
    transitions: tuple[Transition, ...]
    actions: tuple[ActionResult, ...]
    duration_s: float


class Watcher:
    def __init__(self, config: WatchConfig, *, collector=None, journal: AlertJournal | None = None,
                 runner=None) -> None:
        from vnetdiag.collect import Collector

        self.config = config
        # ethtool -S only when exported: no detector reads driver statistics.
        self.collector = collector or Collector(only=namespace_filter(config.namespaces), details=True,
                                                driver_stats=config.exporter.driver_stats)
        self.detectors = det.build(config)
        self.journal = journal or AlertJournal(config.journal)
        kw = {"runner": runner} if runner else {}
        self.responder = Responder(config, self.journal, dry_run=config.dry_run, **kw)
        self.port_range = local_port_range()
        self.previous: CounterSnapshot | None = None
        self.tracer = None
        if config.tracer:
            from vnetdiag.watch.tracing import WatchTracer

            self.tracer = WatchTracer(config.namespaces, interval_s=config.interval_s)
        self.lock = threading.Lock()
        self.view = WatchView(detectors=tuple(d.name for d in self.detectors))
        self.errors = 0
        """Cycles that failed (journaled as "error" lines)."""

    def start(self) -> None:
        if self.tracer is not None:
            self.tracer.start()
        self.journal.write("start", config=asdict(self.config), detectors=[d.name for d in self.detectors],
                           port_range=self.port_range,
                           tracer=None if self.tracer is None else {"backend": self.tracer.backend,
                                                                    "note": self.tracer.trace.note})

    def cycle(self) -> CycleResult:
        t0 = time.monotonic()
        snap = self.collector.snapshot()
        reasons = self.tracer.take(snap) if self.tracer is not None else ()
        obs = Observation(previous=self.previous, current=snap, port_range=self.port_range, drop_reasons=reasons)
        transitions = det.run_all(self.detectors, obs)
        for t in transitions:
            self.journal.write("alert", change=t.change, alert=asdict(t.alert), counters=_counters(snap, t))
        active = [a for dd in self.detectors for a in dd.active()]
        ns_paths = {n.inode: n.path for n in snap.namespaces}
        results = self.responder.on_cycle(transitions, active, snap, ns_paths)
        self.previous = snap
        dur = time.monotonic() - t0
        with self.lock:
            v = self.view
            v.active = active
            v.cycles_total += 1
            v.cycle_duration_s = dur
            for t in transitions:
                k = (t.alert.detector, t.alert.kind, t.change)
                v.transitions_total[k] = v.transitions_total.get(k, 0) + 1
            for r in results:
                k = (r.detector, r.action, r.status)
                v.actions_total[k] = v.actions_total.get(k, 0) + 1
        return CycleResult(snapshot=snap, transitions=tuple(transitions), actions=tuple(results), duration_s=dur)

    def exporter_source(self):
        def source():
            with self.lock:
                return self.previous, WatchView(active=list(self.view.active),
                                                transitions_total=dict(self.view.transitions_total),
                                                actions_total=dict(self.view.actions_total),
                                                cycles_total=self.view.cycles_total,
                                                cycle_duration_s=self.view.cycle_duration_s,
                                                detectors=self.view.detectors)
        return source

    def run(self, stop: threading.Event, on_cycle: Callable[[CycleResult], None] | None = None,
            count: int = 0) -> int:
        """Cycles every interval until ``stop`` is set (or ``count`` cycles); returns cycles run."""
        n = 0
        next_t = time.monotonic()
        while not stop.is_set():
            try:
                result = self.cycle()
            except (OSError, VnetdiagError) as exc:
                # One failed read (a namespace vanishing mid-dump, an fd limit)
                # must not end a monitor: journal it and try again next interval.
                self.errors += 1
                self.journal.write("error", error=f"{type(exc).__name__}: {exc}")
                result = None
            n += 1
            if on_cycle and result is not None:
                on_cycle(result)
            if count and n >= count:
                break
            next_t += self.config.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (a slow action): start the next cycle now, re-anchor
                next_t = time.monotonic()
                delay = 0
            stop.wait(delay)
        return n

    def close(self, reason: str = "stopped") -> None:
        self.journal.write("stop", reason=reason, active=[asdict(a) for a in self.view.active],
                           cycles=self.view.cycles_total)
        self.journal.close()
        self.collector.close()
        if self.tracer is not None:
            self.tracer.close()


def _counters(snap: CounterSnapshot, t: Transition) -> dict:
    from vnetdiag.watch.responder import subject_counters

    return subject_counters(snap, t.alert)
