"""vnetdiag pcap FILE: conversations, retransmissions and their timer signatures."""

from __future__ import annotations

import argparse
import os
import sys
import time

from vnetdiag.errors import UsageError

_PROGRESS_BYTES = 64 << 20

# The analysis uses no linear algebra: keep OpenBLAS from starting (and spinning)
# a thread per core when numpy is imported (measured: halves numpy's import CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def configure(parser: argparse.ArgumentParser, common) -> None:
    parser.add_argument("file", help="pcap or pcapng file, optionally gzip-compressed")
    parser.add_argument("--flows", action="store_true", help="show the TCP analysis of every flow")
    parser.add_argument("--retrans", action="store_true", help="list every retransmitted segment")
    parser.add_argument("--top", type=int, default=20, metavar="N",
                        help="show the N largest conversations (default 20; 0 for all)")
    parser.add_argument("--filter", metavar="EXPR", default=None,
                        help="keep conversations matching all terms: tcp, udp, other, retrans, "
                             "host ADDR, port N, stream N (e.g. 'tcp port 5201')")


PHASES = {"read": "reading", "streams": "grouping {n:,} TCP packets into streams",
          "tcp": "analysing {n:,} TCP packets", "records": "building records of {n:,} TCP streams"}


class PhaseProgress:
    """What ``pcap`` is doing on a large file, from the first byte to the report.

    On a terminal: one live line (bar while reading, then the phase with its
    count and the elapsed time; rich redraws it from its own thread, so it moves
    while numpy works). Elsewhere (a log): one line per phase."""

    def __init__(self, size_bytes: int, stream) -> None:
        self.size_bytes = size_bytes
        self.stream = stream
        self.started_s = time.monotonic()
        self.last = ""
        self.bar = None
        if getattr(stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.fields[packets]}"), TimeElapsedColumn(),
                                console=Console(file=stream, emoji=False), transient=True)
            self.task = self.bar.add_task("reading", total=size_bytes, packets="")
            self.bar.start()

    def read(self, done_bytes: int, total_bytes: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_bytes, total=total_bytes)

    def phase(self, name: str, count: int) -> None:
        if name == "done":
            self.line(f"analysed {count:,} packets in {time.monotonic() - self.started_s:.1f} s")
            return
        text = PHASES.get(name, name).format(n=count)
        if self.bar is not None:
            if name == "read":
                done_mb = self.bar.tasks[0].completed / 1e6
                self.bar.update(self.task, packets=f"{count:,} packets, {done_mb:,.0f} of "
                                                   f"{self.size_bytes / 1e6:,.0f} MB")
            else:  # no byte count any more: a pulsing bar, the phase and its count
                self.bar.update(self.task, description=text, total=None, packets="")
        elif name != "read" or not self.last:
            self.line(f"{text} ({self.size_bytes / 1e6:,.0f} MB)" if name == "read" else text)

    def line(self, text: str) -> None:
        self.last = text
        if self.bar is None:
            self.stream.write(f"vnetdiag pcap: {text}\n")
            self.stream.flush()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _keep_freed_memory() -> None:
    """Let glibc reuse freed array memory instead of returning it to the kernel
    after every batch: the analysis allocates and frees many large numpy arrays,
    and fresh pages cost a page fault each (measured: about as much system time
    as the analysis itself). Only affects this short-lived process."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def run(args, out) -> int:
    from vnetdiag.capture import analyze_file
    from vnetdiag.cli.pcap_view import apply_filter, parse_filter, render

    if args.top < 0:
        raise UsageError(f"--top must be 0 or more, not {args.top}", hint="vnetdiag pcap FILE --top 20")
    terms = parse_filter(args.filter) if args.filter else None
    _keep_freed_memory()
    size = os.path.getsize(args.file) if os.path.isfile(args.file) else 0
    shown = PhaseProgress(size, sys.stderr) if size >= _PROGRESS_BYTES else None
    try:
        report = analyze_file(args.file, progress=shown.read if shown else None,
                              phase=shown.phase if shown else None)
    finally:
        if shown is not None:
            shown.stop()
    if terms:
        report = apply_filter(report, terms)
    for w in report.capture.warnings:
        out.info(f"vnetdiag: warning: {w}")
    if out.json_mode:
        out.document(report.document())
    else:
        render(report, out.console, top=args.top, flows=args.flows, retrans=args.retrans)
    return 0
