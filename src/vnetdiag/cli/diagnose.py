"""vnetdiag diagnose: from a latency symptom to the dropping hop, with evidence."""

from __future__ import annotations

import threading

from vnetdiag.errors import UsageError


def configure(parser, common) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="A",
                        help="where the probe runs: a lab node, a namespace name or inode, optionally @ADDRESS")
    parser.add_argument("--to", dest="target", required=True, metavar="B", help="where the server runs (same forms)")
    parser.add_argument("--pattern", default="tcp-rr", choices=["tcp-rr", "tcp-crr", "udp-rr"],
                        help="probe traffic: persistent TCP, a connection per transaction, or UDP")
    parser.add_argument("--streams", type=int, default=16, help="concurrent probe streams")
    parser.add_argument("--duration", type=float, default=5.0, metavar="S", help="measured window in seconds (default 5)")
    parser.add_argument("--request-bytes", type=int, default=1, metavar="B", help="bytes in each request")
    parser.add_argument("--response-bytes", type=int, default=1, metavar="B", help="bytes in each response")
    parser.add_argument("--no-trace", action="store_true", help="do not trace kernel drops (counters only)")
    parser.add_argument("--capture", action="store_true",
                        help="also capture (bounded tcpdump) at both ends and analyse retransmissions")
    parser.add_argument("--report", metavar="FILE.html",
                        help="write a self-contained HTML report (default: no report)")


def run(args, out) -> int:
    from vnetdiag.diagnose import diagnose, document
    from vnetdiag.report import diagnosis as render

    if args.streams < 1 or args.duration <= 0:
        raise UsageError("--streams must be at least 1 and --duration positive")
    stop = threading.Event()
    try:
        result = diagnose(source=args.source, target=args.target, pattern=args.pattern, streams=args.streams,
                          duration_s=args.duration, request_bytes=args.request_bytes,
                          response_bytes=args.response_bytes, trace=not args.no_trace, capture=args.capture,
                          progress=lambda m: out.info(f"diagnose: {m}"), stop=stop)
    except KeyboardInterrupt:
        raise
    if args.report:
        with open(args.report, "w") as f:
            f.write(render.html(result))
        out.info(f"diagnose: report written to {args.report}")
    if out.json_mode:
        out.document(document(result))
    else:
        render.terminal(result, out.console)
    return 1 if result.diagnosis.problem_found else 0
