"""The Tracer: one ftrace instance per run, its events read as raw per-CPU pages.

Lifecycle (every kernel change journaled first, so SIGKILL leaves nothing that
``vnetdiag cleanup`` or the next run cannot remove):

1. sweep instances of dead vnetdiag processes;
2. journal "remove instances/vnetdiag-<pid>", then create it;
3. set a no-overwrite buffer and the ``mono`` clock, enable the events (with
   in-kernel filters), turn tracing on;
4. drain ``per_cpu/cpuN/trace_pipe_raw`` pages to sinks until stopped;
5. turn tracing off, drain, read ``per_cpu/cpuN/stats`` for lost events,
   remove the instance, replay (delete) the journal.

SIGTERM is turned into KeyboardInterrupt while a tracer runs, so the same
``finally`` path removes the instance on Ctrl-C and on kill.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from vnetdiag.collect import tracedecode as td
from vnetdiag.errors import MissingFeatureError, UsageError
from vnetdiag.model.tracing import Completeness
from vnetdiag.system import privileges, tracefs
from vnetdiag.system.sigterm import TermAsInterrupt
from vnetdiag.system.undo import Journal, RemovePath

# Which tracepoints each --events choice enables.
EVENT_SETS: dict[str, tuple[tuple[str, str], ...]] = {
    # consume_skb and skb_copy_datagram_iovec mark where an skb's life ends, so
    # a reused address does not inherit an older packet's devices.
    "drops": (td.DROP, td.CONSUME, td.DELIVER, td.RECEIVE, td.QUEUE),
    # Only the drops: reason and location, no device (the cheapest; like dropwatch).
    "reasons": (td.DROP,),
    "paths": (td.DROP, td.CONSUME, td.DELIVER, td.RECEIVE, td.QUEUE, td.XMIT, td.RETRANS, td.RETRANS_SYNACK),
    "all": td.KNOWN_EVENTS,
}


class Tracer:
    """An ftrace instance named ``vnetdiag-<pid>`` with the given events enabled."""

    def __init__(self, events: Sequence[tuple[str, str]], *, root: Path = tracefs.TRACEFS_ROOT,
                 buffer_kb: int = 8192, filters: dict[tuple[str, str], str] | None = None,
                 journal_dir: Path | None = None) -> None:
        self.root = root
        self.wanted = tuple(events)
        self.buffer_kb = buffer_kb
        self.filters = dict(filters or {})
        self.journal_dir = journal_dir
        self.name = f"vnetdiag-{os.getpid()}"
        self.formats: list[tracefs.EventFormat] = []
        self.missing: list[str] = []
        self.layout: tracefs.PageLayout | None = None
        self.instance: tracefs.Instance | None = None
        self._journal: Journal | None = None
        self._fds: dict[int, int] = {}
        self._sigterm = TermAsInterrupt()
        self.pages_read = 0
        self.missed_in_pages = 0
        self.started_ns = 0
        self.stopped_ns = 0

    # -- lifecycle

    def start(self) -> None:
        privileges.require_root("tracing")
        root = tracefs.open_tracefs(self.root)
        from vnetdiag.system.cleanup import CleanupReport, sweep_tracing_instances

        sweep_tracing_instances(CleanupReport())
        self.layout = tracefs.parse_header_page((root / "events" / "header_page").read_text())
        for system, event in self.wanted:
            fmt = tracefs.read_format(root, system, event)
            if fmt is None:
                self.missing.append(f"{system}:{event}")
            else:
                self.formats.append(fmt)
        if not any((f.system, f.name) == td.DROP for f in self.formats):
            raise MissingFeatureError("this kernel has no skb:kfree_skb tracepoint",
                                      hint="drop tracing needs Linux >= 5.17 with CONFIG_TRACEPOINTS")
        self.instance = tracefs.Instance(root, self.name)
        self._journal = Journal(f"trace-{os.getpid()}", directory=self.journal_dir).open()
        self._journal.record(RemovePath(path=str(self.instance.path)))
        self._sigterm.install()
        try:
            self.instance.create()
            inst = self.instance
            inst.set("tracing_on", "0")
            inst.set("buffer_size_kb", str(self.buffer_kb))
            inst.set("options/overwrite", "0")
            inst.set("trace_clock", "mono")
            for fmt in self.formats:
                inst.enable_event(fmt.system, fmt.name, self.filters.get((fmt.system, fmt.name)))
            for cpu in inst.cpus():
                self._fds[cpu] = inst.open_raw(cpu)
            self.started_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            inst.set("tracing_on", "1")
        except BaseException:
            self.close()
            raise

    def read_pages(self) -> list[tuple[int, bytes]]:
        """Every page the kernel has ready now, as (cpu, page); never blocks."""
        assert self.layout is not None
        size = self.layout.data_offset + self.layout.data_size
        out: list[tuple[int, bytes]] = []
        for cpu, fd in self._fds.items():
            for _ in range(4096):  # bound one drain so a flood cannot starve the caller
                try:
                    page = os.read(fd, size)
                except BlockingIOError:
                    break
                if not page:
                    break
                out.append((cpu, page))
        self.pages_read += len(out)
        return out

    def stop_tracing(self) -> None:
        if self.instance is not None and self.instance.path.exists():
            self.instance.set("tracing_on", "0")
            self.stopped_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def completeness(self, events_read: int) -> Completeness:
        lost: dict[int, int] = {}
        if self.instance is not None and self.instance.path.exists():
            for cpu in self.instance.cpus():
                lost[cpu] = self.instance.cpu_stats(cpu).lost
        total = max(sum(lost.values()), self.missed_in_pages)
        return Completeness(events_read=events_read, events_lost=total, lost_by_cpu=lost,
                            missing_events=tuple(self.missing))

    def close(self) -> None:
        """Remove the instance and the journal; safe to call twice."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        if self.instance is not None:
            self.instance.remove()
        if self._journal is not None:
            self._journal.undo()
            self._journal = None
        self._sigterm.restore()

    def __enter__(self) -> "Tracer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_events(spec: str | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if isinstance(spec, str):
        try:
            return EVENT_SETS[spec]
        except KeyError:
            raise UsageError(f"unknown event set {spec!r}",
                                      hint=f"use one of {', '.join(EVENT_SETS)}") from None
    return tuple(spec)
