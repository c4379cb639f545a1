"""vnetdiag pcap FILE: conversations, retransmissions and their timer signatures."""

from __future__ import annotations

import argparse
import os
import sys

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
    progress = None
    size = os.path.getsize(args.file) if os.path.isfile(args.file) else 0
    bar = None
    if size >= _PROGRESS_BYTES and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

        bar = Progress(TextColumn("reading"), BarColumn(), TransferSpeedColumn(),
                       console=Console(file=sys.stderr), transient=True)
        task = bar.add_task("read", total=size)
        bar.start()

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done)
    try:
        report = analyze_file(args.file, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    if terms:
        report = apply_filter(report, terms)
    for w in report.capture.warnings:
        out.info(f"vnetdiag: warning: {w}")
    if out.json_mode:
        out.document(report.document())
    else:
        render(report, out.console, top=args.top, flows=args.flows, retrans=args.retrans)
    return 0
