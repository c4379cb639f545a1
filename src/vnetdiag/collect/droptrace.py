"""One interface to both drop backends, chosen at run time.

    with drop_trace(backend="auto", filter="udp port 5001", flows=[(17, a, pa, b, pb)]) as t:
        run_workload()
    t.result            # DropTraceResult: .backend is "ebpf" or "tracefs", .note says why

* ``ebpf`` (collect/ebpf_drops.py): bpftrace on skb:kfree_skb reading the
  skb: exact namespace inode and ifindex, flows, per-packet records for the
  filter and the flows, counts in kernel maps. Needs root, bpftrace, BTF.
* ``tracefs`` (collect/tracewindow.py): the ftrace reader; device placed by
  name from the skb's earlier events, no flows. ``result.analysis`` holds its
  TraceAnalysis; filters and flows are not applied (the note says so).
* ``auto``: ebpf when it can run here, else tracefs with a note naming why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from vnetdiag.errors import UsageError, VnetdiagError
from vnetdiag.model.drops import DropTraceResult

BACKENDS = ("auto", "ebpf", "tracefs")


def ebpf_unusable() -> str | None:
    """Why the eBPF backend cannot run here (one line with a hint), or None."""
    from vnetdiag.system import bpftrace

    try:
        bpftrace.check_usable()
    except VnetdiagError as exc:
        return str(exc)
    return None


class DropTrace:
    """A drop trace window on the chosen backend; start(), snapshot(), stop()."""

    def __init__(self, *, backend: str = "auto", filter: str | None = None, flows: Iterable = (),
                 namespaces: list[str] | None = None, light: bool = False, **ebpf_options) -> None:
        if backend not in BACKENDS:
            raise UsageError(f"unknown drop backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
        self.requested = backend
        self.filter = filter
        self.flows = tuple(flows)
        self.namespaces = namespaces
        self.light = light
        self.ebpf_options = ebpf_options
        self.backend: str | None = None
        self.note = ""
        self.result: DropTraceResult | None = None
        self._src = None
        if filter:
            from vnetdiag.collect import ebpf_filter

            ebpf_filter.parse(filter)  # bad words are a usage error whatever the backend

    def start(self) -> None:
        if self.requested in ("auto", "ebpf"):
            from vnetdiag.collect.ebpf_drops import EbpfDropSource

            why = ebpf_unusable()
            if why is None:
                src = EbpfDropSource(filter=self.filter, flows=self.flows, **self.ebpf_options)
                try:
                    src.start()
                    self._src, self.backend = src, "ebpf"
                    return
                except VnetdiagError as exc:
                    if self.requested == "ebpf":
                        raise
                    why = str(exc)
            elif self.requested == "ebpf":
                from vnetdiag.system import bpftrace

                bpftrace.check_usable()  # raises the same error, with its exit status and hint
            self.note = f"eBPF backend not usable ({why}); used tracefs"
        from vnetdiag.collect.tracewindow import TraceWindow

        if self.filter or self.flows:
            self.note = (self.note + "; " if self.note else "") + \
                "tracefs sees no packet headers: --filter and flows are not applied"
        self._src = TraceWindow(events="reasons" if self.light else "drops", namespaces=self.namespaces)
        self.backend = "tracefs"
        self._src.start()

    def _wrap(self, got) -> DropTraceResult:
        if isinstance(got, DropTraceResult):
            return DropTraceResult(backend=got.backend, duration_s=got.duration_s, tallies=got.tallies,
                                   packets=got.packets, loss=got.loss, filter=got.filter, note=self.note)
        return DropTraceResult(backend="tracefs", duration_s=got.duration_s, note=self.note, analysis=got,
                               filter=self.filter or "")

    @property
    def ebpf(self):
        """The running eBPF source (its in-kernel counts), or None on tracefs."""
        return self._src if self.backend == "ebpf" else None

    def snapshot(self) -> DropTraceResult:
        return self._wrap(self._src.snapshot())

    def stop(self) -> DropTraceResult:
        if self._src is None:
            raise RuntimeError("DropTrace.stop() before start()")
        self.result = self._wrap(self._src.stop())
        return self.result


@contextlib.contextmanager
def drop_trace(**options) -> Iterator[DropTrace]:
    """Trace drops while the block runs; ``t.result`` holds the DropTraceResult after it.

    Options are DropTrace's: backend ('auto', 'ebpf', 'tracefs'), filter
    (pcap-filter words), flows ((proto, a, a_port, b, b_port) or dicts with
    proto/src/sport/dst/dport: records for both directions), namespaces (tracefs
    device placement globs), light (tracefs: reasons only), and for ebpf
    max_records, sample, vxlan_ports.
    """
    t = DropTrace(**options)
    t.start()
    try:
        yield t
    finally:
        t.stop()
