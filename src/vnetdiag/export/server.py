"""The /metrics endpoint: a prometheus_client custom collector over a source
of snapshots, served by prometheus_client's threaded HTTP server.

Standalone (`vnetdiag export`) every scrape takes a fresh snapshot through one
long-lived Collector (sockets stay open; scrapes are serialised by a lock).
Inside `vnetdiag watch` the source is the watch loop's latest snapshot and
detector state, so a scrape reads nothing from the kernel.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from vnetdiag.errors import UsageError
from vnetdiag.export.metrics import P, Filters, WatchView, build_families, snapshot_families, watch_families
from vnetdiag.model.counters import CounterSnapshot

Source = Callable[[], tuple[CounterSnapshot | None, WatchView | None]]


class SnapshotCollector:
    """prometheus_client custom collector (its ``collect`` runs per scrape)."""

    def __init__(self, source: Source, filters: Filters) -> None:
        self.source = source
        self.filters = filters
        self.errors = 0
        self.scrapes = 0
        self.last_duration_s = 0.0
        self._cached: tuple[object, list] | None = None
        """(snapshot, its families): inside watch, scrapes between two cycles reuse them."""

    def collect(self):
        t0 = time.monotonic()
        self.scrapes += 1
        families = build_families()
        try:
            snap, view = self.source()
            if snap is not None:
                if self._cached is None or self._cached[0] is not snap:
                    self._cached = (snap, snapshot_families(snap, self.filters))
                families.extend(self._cached[1])
            if view is not None:
                families.extend(watch_families(view))
        except Exception:  # noqa: BLE001 - a failed read is a metric, not a crash of the server
            self.errors += 1
        yield from families
        self.last_duration_s = time.monotonic() - t0
        yield GaugeMetricFamily(P + "scrape_duration_seconds", "Time to build this scrape's metrics",
                                value=self.last_duration_s)
        yield CounterMetricFamily(P + "scrape_errors", "Scrapes whose snapshot failed", value=self.errors)
        yield CounterMetricFamily(P + "scrapes", "Scrapes served", value=self.scrapes)


def live_source(collector) -> Source:
    """Fresh snapshot per scrape from a ``vnetdiag.collect.Collector``."""
    lock = threading.Lock()

    def source():
        with lock:
            return collector.snapshot(), None
    return source


class MetricsServer:
    def __init__(self, source: Source, filters: Filters, addr: str, port: int) -> None:
        from prometheus_client import start_http_server

        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = SnapshotCollector(source, filters)
        self.registry.register(self.collector)
        try:
            self.server, self.thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"cannot listen on {addr}:{port}: the port is already in use",
                                 hint="choose another with --listen ADDR:PORT") from None
            raise UsageError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}",
                             hint="give a local address and a free port, e.g. --listen 127.0.0.1:9469") from None
        self.addr, self.port = self.server.server_address[:2]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
