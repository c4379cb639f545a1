"""vnetdiag compare --path LABEL=FROM->TO ...: several paths probed interleaved, side by side."""

from __future__ import annotations

import os
import signal
import threading

from vnetdiag.errors import BadInputError, Interrupted, UsageError


def configure(parser, common) -> None:
    from vnetdiag.compare import PATH_HELP

    parser.add_argument("--path", dest="paths", action="append", metavar="LABEL=FROM->TO", default=[],
                        help=f"a path to probe, twice or more; the first is the baseline. {PATH_HELP}")
    parser.add_argument("--pattern", default="tcp-rr", choices=["tcp-rr", "tcp-crr", "udp-rr", "tcp-syn", "icmp-echo"],
                        help="probe traffic: persistent TCP, a connection per transaction, UDP, or server-less "
                             "handshakes (SYN -> RST, ICMP echo) that a VM's guest answers; a path to a VM's guest "
                             "makes every path tcp-syn")
    parser.add_argument("--streams", type=int, default=4, help="concurrent probe streams on each path")
    parser.add_argument("--duration", type=float, default=5.0, metavar="S",
                        help="measured seconds on each path, over all of its slices")
    parser.add_argument("--slice", dest="slice_s", type=float, default=0.5, metavar="S",
                        help="measured seconds of one path's turn in a round (rounds = duration / slice)")
    parser.add_argument("--warmup", type=float, default=0.1, metavar="S", help="unmeasured seconds at each slice's start")
    parser.add_argument("--request-bytes", type=int, default=1, metavar="B", help="bytes in each request")
    parser.add_argument("--response-bytes", type=int, default=1, metavar="B", help="bytes in each response")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws of the rounds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (same data, same intervals)")
    parser.add_argument("--html", metavar="FILE.html",
                        help="write one self-contained page with the histograms overlaid (default: none)")
    parser.add_argument("--no-build", action="store_true", help="do not read how each path is built")


def run(args, out) -> int:
    from vnetdiag.compare import compare, document, parse_path

    if len(args.paths) < 2:
        raise UsageError("compare needs two paths or more", hint="e.g. vnetdiag compare --path veth=vm1->vm3 "
                                                                  "--path macvtap=vm2->vm3")
    if args.streams < 1 or args.duration <= 0 or args.slice_s <= 0 or args.warmup < 0 or args.resamples < 100:
        raise UsageError("--streams must be at least 1, --duration and --slice positive, --warmup not negative, "
                         "--resamples at least 100")
    paths = [parse_path(p) for p in args.paths]
    html_file = None
    if args.html:
        try:
            html_file = open(args.html, "w", encoding="utf-8")  # noqa: SIM115 - before the run: fail early
        except OSError as exc:
            raise BadInputError(f"cannot write --html {args.html}: {exc.strerror}", hint="give a writable path") from None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C ends the run with the rounds so far
    stop = threading.Event()
    try:
        result = compare(paths, duration_s=args.duration, slice_s=args.slice_s, warmup_s=args.warmup,
                         pattern=args.pattern, streams=args.streams, request_bytes=args.request_bytes,
                         response_bytes=args.response_bytes, level=args.level, resamples=args.resamples,
                         seed=args.seed, describe=not args.no_build,
                         progress=lambda m: out.info(f"compare: {m}"), stop=stop)
        if html_file is not None:
            from vnetdiag.report.compare_html import html

            html_file.write(html(result))
            out.info(f"compare: wrote {args.html}")
    except BaseException:
        if html_file is not None:  # a failed run leaves no empty page behind
            html_file.close()
            os.unlink(args.html)
        raise
    if html_file is not None:
        html_file.close()
    if out.json_mode:
        out.document(document(result))
    else:
        from vnetdiag.report.compare_text import render

        render(result, out.console)
    if result.interrupted:
        return Interrupted.exit_status
    return 0
