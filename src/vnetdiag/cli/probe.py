"""vnetdiag probe TARGET: request/response latency with tails labelled by TCP timer."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys

from vnetdiag.cli.options import port_number, split_host_port
from vnetdiag.errors import BadInputError, Interrupted, VnetdiagError
from vnetdiag.model.probe import PATTERNS


def configure(parser: argparse.ArgumentParser, common) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="HOST or HOST:PORT ([IPV6]:PORT) of a 'vnetdiag serve', or a lab node: vm3")
    parser.add_argument("--port", type=port_number, default=7735, help="server port when TARGET has none")
    parser.add_argument("--pattern", choices=PATTERNS, default="tcp-rr",
                        help="tcp-rr (persistent), tcp-crr (connect per transaction), udp-rr, bsp (lockstep ranks)")
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams (bsp: ranks)")
    parser.add_argument("--workers", type=int, default=1, help="processes to spread the streams over")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S", help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, metavar="S", help="unmeasured seconds first")
    parser.add_argument("--request-bytes", type=int, default=1, metavar="B", help="bytes in each request")
    parser.add_argument("--response-bytes", type=int, default=1, metavar="B", help="bytes in each response")
    parser.add_argument("--rate", type=float, default=None, metavar="R",
                        help="open loop: R transactions/s over all streams; latency counts from the "
                             "intended send time (the uncorrected view is shown too)")
    parser.add_argument("--netns", metavar="NS",
                        help="probe from this network namespace (name, inode, or a lab node: vm1; "
                             "default: this process's)")
    parser.add_argument("--token", help="shared token of the server (default: $VNETDIAG_PROBE_TOKEN)")
    parser.add_argument("--compute-ms", type=float, default=1.0, help="bsp: compute time per step")
    parser.add_argument("--slow-ms", type=float, default=10.0,
                        help="transactions slower than this are examined with TCP_INFO (default 10)")
    parser.add_argument("--udp-timeout-ms", type=float, default=100.0,
                        help="udp-rr: a request unanswered this long is lost (a late reply still counts as late)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up connecting to the server after S seconds")
    parser.add_argument("--hlog", metavar="FILE",
                        help="write per-second HdrHistogram interval log (ns) (default: not written)")
    parser.add_argument("--raw", metavar="FILE",
                        help="write every transaction: CSV of stream, completion time (s), latency (us) "
                             "(default: not written)")


def resolve_netns(spec: str | None) -> str | None:
    """A path that opens the namespace ``spec`` (any form, or a lab node "vm1")."""
    if spec is None:
        return None
    from vnetdiag.naming import namespace

    return namespace(spec).path


def resolve_target(target: str) -> str:
    """An address or host name as given, or the address of a lab node ("vm3")."""
    try:
        ipaddress.ip_address(target)
        return target
    except ValueError:
        pass
    from vnetdiag.naming import labs

    for lab in labs():
        try:
            lab.netns(target)
            return lab.ip(target)
        except VnetdiagError:
            continue
    return target


def run(args, out) -> int:
    from vnetdiag.probe.client import run_probe

    # Ctrl-C must reach us even when started from a shell that ignores SIGINT in
    # background jobs: interrupting is how partial results are asked for.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    token = args.token if args.token is not None else os.environ.get("VNETDIAG_PROBE_TOKEN")
    files: dict[str, object] = {}
    try:
        for option in ("hlog", "raw"):
            path = getattr(args, option)
            if path:
                try:
                    files[option] = open(path, "w", encoding="ascii")  # noqa: SIM115 - closed below
                except OSError as exc:
                    raise BadInputError(f"cannot write --{option} {path}: {exc.strerror}",
                                        hint="give a writable path") from None
        host, port = split_host_port(args.target, args.port)
        progress, bar = _progress_bar(out, args.warmup + args.duration)
        try:
            result = run_probe(
                resolve_target(host), port=port, pattern=args.pattern, streams=args.streams,
                workers=args.workers, duration_s=args.duration, warmup_s=args.warmup,
                request_bytes=args.request_bytes, response_bytes=args.response_bytes, rate_per_s=args.rate,
                netns=resolve_netns(args.netns), token=token, compute_ms=args.compute_ms,
                slow_threshold_ms=args.slow_ms, udp_timeout_ms=args.udp_timeout_ms,
                connect_timeout_s=args.connect_timeout, hlog=files.get("hlog"), raw=files.get("raw"),
                progress=progress)
        finally:
            if bar is not None:
                bar.stop()
    except BaseException:
        for option, f in files.items():  # a failed run leaves no half-written file behind
            f.close()
            os.unlink(getattr(args, option))
        raise
    for f in files.values():
        f.close()
    if out.json_mode:
        out.document(result.as_document())
    else:
        from vnetdiag.cli.probe_view import render

        render(result, out.console)
    return Interrupted.exit_status if result.interrupted else 0


def _progress_bar(out, total_s: float):
    """A progress bar on stderr (only when stderr is a terminal)."""
    if not getattr(out.err_stream, "isatty", lambda: False)():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("probing"), BarColumn(), TextColumn("{task.fields[tx]:,} transactions"),
                   TimeRemainingColumn(), console=Console(file=out.err_stream or sys.stderr, emoji=False), transient=True,
                   auto_refresh=False)  # no refresh thread: workers are forked from this process
    task = bar.add_task("probe", total=total_s, tx=0)
    bar.start()

    def progress(elapsed_s: float, total: float, transactions: int) -> None:
        bar.update(task, completed=elapsed_s, tx=transactions, refresh=True)

    return progress, bar
