"""vnetdiag diagnose: from a latency symptom to the dropping hop, with evidence."""

from __future__ import annotations

import math
import threading
import time

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


class Countdown:
    """The time left in diagnose's window, on stderr, driven only by diagnose's
    progress messages: it starts at "probe ..." and ends at the next message
    that follows the window ("path ...") or when diagnose returns.

    A terminal gets one line redrawn four times a second; a log gets a line
    every ``log_every_s`` seconds, so a long window does not flood it."""

    def __init__(self, stream, *, tick_s: float = 0.25) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.tick_s = tick_s
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.drawn = False

    def say(self, message: str) -> None:
        with self.lock:
            self._clear()
            self.stream.write(f"diagnose: {message}\n")
            self.stream.flush()

    def start(self, total_s: float) -> None:
        self.stop()
        self.done.clear()
        deadline = time.monotonic() + total_s
        log_every_s = 1.0 if total_s <= 10 else 5.0
        self.thread = threading.Thread(target=self._run, args=(deadline, total_s, log_every_s), daemon=True,
                                       name="diagnose-countdown")
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        with self.lock:
            self._clear()

    def _run(self, deadline: float, total_s: float, log_every_s: float) -> None:
        next_log = time.monotonic()
        while not self.done.is_set():
            left = deadline - time.monotonic()
            with self.lock:
                if self.tty:
                    done = min(1.0, max(0.0, 1 - left / total_s))
                    bar = "━" * round(20 * done) + "╺" + " " * (20 - round(20 * done))
                    self.stream.write(f"\r\x1b[Kdiagnose: window {bar} {max(left, 0):4.1f} s left")
                    self.drawn = True
                    self.stream.flush()
                elif time.monotonic() >= next_log:
                    self.stream.write(f"diagnose: {math.ceil(left - 0.05)} s left in the window\n"
                                      if left > 0.05 else "diagnose: window over, waiting for the last transactions\n")
                    self.stream.flush()
                    next_log += log_every_s
                    if left <= 0:
                        return
            self.done.wait(self.tick_s)

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def run(args, out) -> int:
    import inspect

    from vnetdiag.diagnose import diagnose, document
    from vnetdiag.report import diagnosis as render

    if args.streams < 1 or args.duration <= 0:
        raise UsageError("--streams must be at least 1 and --duration positive")
    stop = threading.Event()
    countdown = Countdown(out.err_stream)
    # The window is the probe's warm-up plus the measured seconds.
    window_s = args.duration + inspect.signature(diagnose).parameters["warmup_s"].default

    def progress(message: str) -> None:
        if message.startswith("path "):  # the window is over
            countdown.stop()
        countdown.say(message)
        if message.startswith("probe "):
            countdown.start(window_s)

    try:
        result = diagnose(source=args.source, target=args.target, pattern=args.pattern, streams=args.streams,
                          duration_s=args.duration, request_bytes=args.request_bytes,
                          response_bytes=args.response_bytes, trace=not args.no_trace, capture=args.capture,
                          progress=progress, stop=stop)
    finally:
        countdown.stop()
    if args.report:
        with open(args.report, "w") as f:
            f.write(render.html(result))
        out.info(f"diagnose: report written to {args.report}")
    if out.json_mode:
        out.document(document(result))
    else:
        render.terminal(result, out.console)
    return 1 if result.diagnosis.problem_found else 0
