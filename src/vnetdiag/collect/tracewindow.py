"""Trace for a window of time and analyse: the library entry point.

    with trace_window(events="drops", namespaces=["vnd-*"]) as window:
        ...                      # run the workload, the probe, a fault
    window.result               # TraceAnalysis: drops, paths, rates, completeness

A reader thread drains the per-CPU pages while the window is open. Two ways of
reading them:

* ``drops``: pages are not decoded unless they may hold a kfree_skb record (a
  byte search for its type id). For each drop, the recent pages (kept in a
  bounded ring) that contain its skb address are decoded to find the devices
  it crossed. Cheap enough to run beside a workload.
* ``paths`` / ``all``: every record is decoded, merged across CPUs by time and
  fed to the analyses (analyze/trace.py).
"""

from __future__ import annotations

import contextlib
import platform
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import asdict
from operator import attrgetter
from pathlib import Path

from vnetdiag.analyze.trace import TraceAnalyzer
from vnetdiag.collect import devmap as _devmap
from vnetdiag.collect import tracecolumns as tc
from vnetdiag.collect import tracedecode as td
from vnetdiag.collect import tracefile
from vnetdiag.collect.tracing import Tracer, resolve_events
from vnetdiag.model import events as ev
from vnetdiag.model.tracing import Hop, PacketPath, TraceAnalysis
from vnetdiag.system import kallsyms, tracefs

_HOP_KIND = {ev.ReceiveEvent: "rx", ev.QueueEvent: "queue", ev.XmitEvent: "xmit", ev.GroEvent: "gro"}
_TS = attrgetter("ts_ns")
_PAGE_TS = struct.Struct("<Q").unpack_from
_BATCH_PAGES = 256
_ENDS = (ev.ConsumeEvent, ev.DropEvent, ev.DeliverEvent)


class DropScanner:
    """Finds drops in raw pages and rebuilds each dropped packet's recent path."""

    def __init__(self, decoder: td.RecordDecoder, *, ring_pages: int = 2048, lookback_ns: int = 200_000_000,
                 max_pages: int = 64) -> None:
        self.max_pages = max_pages
        self.decoder = decoder
        self.pattern = struct.pack("<H", decoder.id_of[td.DROP])
        self.ring_pages = ring_pages
        self.lookback_ns = lookback_ns
        self.rings: dict[int, deque] = {}
        self._seq = 0
        self._cache: OrderedDict[int, list] = OrderedDict()
        self.pages_decoded = 0

    def _decode(self, seq: int, cpu: int, page: bytes) -> list:
        got = self._cache.get(seq)
        if got is None:
            got = self._cache[seq] = self.decoder.decode_page(cpu, page)
            self.pages_decoded += 1
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return got

    def feed(self, cpu: int, page: bytes) -> list[PacketPath]:
        self._seq += 1
        ring = self.rings.setdefault(cpu, deque(maxlen=self.ring_pages))
        ring.append((self._seq, cpu, page))
        if page.find(self.pattern, 16) < 0:
            return []
        out = []
        for e in self._decode(self._seq, cpu, page):
            if type(e) is ev.DropEvent:
                out.append(self._path_of(e))
        return out

    def _path_of(self, drop: ev.DropEvent) -> PacketPath:
        """Look back for the dropped skb's events: its own CPU first (a packet's
        path is normally processed on one CPU), then the others, newest page
        first, at most ``max_pages`` pages per CPU. A CPU's scan stops at the
        end of the address's previous life (a free event) or at the first page
        without the address once events were found (a path is contiguous)."""
        key = drop.skbaddr.to_bytes(8, "little")
        found: list[ev.TraceEvent] = []
        oldest = drop.ts_ns - self.lookback_ns
        order = sorted(self.rings, key=lambda c: c != drop.cpu)
        for cpu in order:
            if found and cpu != drop.cpu:
                break
            seen_here = False
            for n, (seq, pcpu, page) in enumerate(reversed(self.rings[cpu])):
                if n >= self.max_pages or _PAGE_TS(page, 0)[0] < oldest and n > 0:
                    break
                if key not in page:
                    if seen_here:
                        break
                    continue
                evs = [e for e in self._decode(seq, pcpu, page)
                       if getattr(e, "skbaddr", None) == drop.skbaddr and e.ts_ns <= drop.ts_ns and e is not drop]
                if not evs:
                    if seen_here:
                        break
                    continue
                seen_here = True
                found.extend(evs)
                if any(type(e) in _ENDS for e in evs):
                    break  # the previous life of this address ends here
        found.sort(key=_TS)
        start = 0
        for i, e in enumerate(found):
            if type(e) in _ENDS:
                start = i + 1
        hops = tuple(Hop(device=e.device, netns=None, kind=_HOP_KIND[type(e)], ts_ns=e.ts_ns, len_bytes=e.len_bytes)
                     for e in found[start:] if type(e) in _HOP_KIND)
        return PacketPath(skbaddr=drop.skbaddr, hops=hops, end="dropped", end_ts_ns=drop.ts_ns, drop=drop)


class _Merger:
    """Releases columnar batches in time order across CPUs: a record is released
    once every CPU has delivered records at least as new (per-CPU watermarks;
    a CPU with nothing to read is taken to be at 'now' minus 1 ms)."""

    def __init__(self) -> None:
        self.pending: tc.Columns | None = None

    def push(self, cols: tc.Columns, cpus: list[int], now_ns: int, *, flush: bool = False) -> tc.Columns:
        merged = tc.concat([self.pending, cols] if self.pending is not None else [cols])
        if flush:
            self.pending = None
            return merged
        marks = []
        for cpu in cpus:
            mine = cols.ts_ns[cols.cpu == cpu]
            marks.append(int(mine.max()) if len(mine) else now_ns - 1_000_000)
        ready, self.pending = tc.split(merged, min(marks) if marks else now_ns)
        return ready


class TraceWindow:
    """A Tracer plus a reader thread and the analyses; see the module docstring."""

    def __init__(self, *, events="drops", namespaces=None, devmap=None, record_to: Path | None = None,
                 buffer_kb: int = 8192, poll_s: float = 0.05, root: Path = tracefs.TRACEFS_ROOT) -> None:
        self.event_set = events if isinstance(events, str) else "custom"
        self.tracer = Tracer(resolve_events(events), root=root, buffer_kb=buffer_kb)
        self.namespaces = namespaces
        self._devmap = devmap
        self.record_to = record_to
        self.drops = None
        """A DropTraceResult of the same window, set before stop(): recorded too."""
        self.poll_s = poll_s
        self.result: TraceAnalysis | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._writer: tracefile.TraceWriter | None = None
        self.started_s = 0.0

    @property
    def fast_drops(self) -> bool:
        return self.event_set in ("drops", "reasons") and self._writer is None

    def start(self) -> None:
        self.devmap = self._devmap if self._devmap is not None else _devmap.device_map(self.namespaces)
        self.syms = kallsyms.load()
        self.tracer.start()
        try:
            self._recsym = _RecordingSymbolizer(self.syms)
            self.decoder = td.RecordDecoder(self.tracer.formats, self.tracer.layout, self._recsym)
            self.analyzer = TraceAnalyzer(self.devmap)
            self.scanner = DropScanner(self.decoder)
            self.merger = _Merger()
            self.columns = tc.ColumnDecoder(self.decoder)
            if self.record_to is not None:
                self._writer = tracefile.TraceWriter(self.record_to)
                root = self.tracer.root
                self._writer.meta({
                    "kernel": platform.release(), "events": self.event_set,
                    "formats": {f"{f.system}:{f.name}": (root / "events" / f.system / f.name / "format").read_text()
                                for f in self.tracer.formats},
                    "header_page": (root / "events" / "header_page").read_text(),
                    "devices": {n: [asdict(r) for r in refs] for n, refs in self.devmap.items()},
                    "started_ns": self.tracer.started_ns})
            self.started_s = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="vnetdiag-tracer", daemon=True)
            self._thread.start()
        except BaseException:
            # Interrupted (or failed) part way: the reader must stop before its fds close.
            self._stop.set()
            if self._thread is not None and self._thread.is_alive():
                self._thread.join()
            self.tracer.close()
            raise

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._poll() and self._stop.wait(self.poll_s):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread in stop()
            self._error = exc

    def _poll(self, *, flush: bool = False) -> int:
        pages = self.tracer.read_pages()
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        with self._lock:
            for _cpu, page in pages:
                info = tracefs.page_info(page, self.tracer.layout)
                if info.missed > 0:
                    self.tracer.missed_in_pages += info.missed
            if self._writer is not None:
                for cpu, page in pages:
                    self._writer.page(cpu, page)
            if self.fast_drops:
                for cpu, page in pages:
                    self.analyzer.add_drop_paths(self.scanner.feed(cpu, page))
            else:
                cpus = list(self.tracer._fds)
                for i in range(0, max(len(pages), 1), _BATCH_PAGES):  # numpy is fastest on mid-sized batches
                    last = i + _BATCH_PAGES >= len(pages)
                    ready = self.merger.push(self.columns.decode(pages[i:i + _BATCH_PAGES]), cpus, now,
                                             flush=flush and last)
                    if len(ready) or ready.others:
                        self.analyzer.feed_columns(ready)
        return len(pages)

    def snapshot(self) -> TraceAnalysis:
        """The analysis so far (for live views); completeness is read now."""
        with self._lock:
            duration = time.monotonic() - self.started_s
            return TraceAnalysis(duration_s=duration, completeness=self.tracer.completeness(self._events_read()),
                                 drops=self.analyzer.drops.result(duration))

    def _events_read(self) -> int:
        inst = self.tracer.instance
        if inst is None or not inst.path.exists():
            return 0
        return sum(inst.cpu_stats(c).read_events for c in inst.cpus())

    def stop(self) -> TraceAnalysis:
        """Stop tracing, drain what is left, remove the instance, return the analysis."""
        if not hasattr(self, "analyzer"):  # interrupted while starting: nothing was read
            try:
                completeness = self.tracer.completeness(0)
            finally:
                self.tracer.close()
            self.result = TraceAnalysis(duration_s=0.0, completeness=completeness, drops=())
            return self.result
        try:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            if self._error is not None:
                raise self._error
            self.tracer.stop_tracing()
            duration = time.monotonic() - self.started_s
            while self._poll():
                pass
            self._poll(flush=True)
            completeness = self.tracer.completeness(self._events_read())
            with self._lock:
                self.result = self.analyzer.result(duration, completeness)
            if self._writer is not None:
                if self.drops is not None:
                    self._writer.drops(self.drops)
                symbols = {f"{a:#x}": s for a, s in self._symbol_table().items()}
                self._writer.end({"duration_s": duration, "symbols": symbols,
                                  "completeness": tracefile.completeness_json(completeness)})
                self._writer.close()
                self._writer = None
            return self.result
        finally:
            if self._writer is not None:
                self._writer.close()  # no END chunk: readers will call it truncated
            self.tracer.close()

    def _symbol_table(self) -> dict[int, str]:
        """Every address the decoder symbolized: what a report needs offline."""
        return dict(self._recsym.seen)


class _RecordingSymbolizer:
    """Wraps kallsyms to remember every address it symbolized (for recordings)."""

    def __init__(self, table: kallsyms.Kallsyms) -> None:
        self.table = table
        self.seen: dict[int, str] = {}

    def __call__(self, addr: int) -> str:
        s = self.seen.get(addr)
        if s is None:
            s = self.seen[addr] = self.table.symbolize(addr)
        return s


@contextlib.contextmanager
def trace_window(**options) -> Iterator[TraceWindow]:
    """Trace while the block runs; ``window.result`` holds the TraceAnalysis after it.

    Options are TraceWindow's: events ('drops', 'paths', 'all'), namespaces
    (globs of namespace names used to place devices), devmap, record_to.
    """
    window = TraceWindow(**options)
    window.start()
    try:
        yield window
    finally:
        window.stop()


def analyze_recording(rec: tracefile.Recording) -> TraceAnalysis:
    """Run the analyses on a recording, offline, with its own formats and symbols."""
    columns = tc.ColumnDecoder(td.RecordDecoder(rec.formats, rec.layout, rec.symbolize))
    analyzer = TraceAnalyzer(rec.devmap)
    for i in range(0, len(rec.pages), _BATCH_PAGES):  # bounded batches; the join carries open paths over
        analyzer.feed_columns(columns.decode(rec.pages[i:i + _BATCH_PAGES]))
    return analyzer.result(rec.duration_s, rec.completeness)

