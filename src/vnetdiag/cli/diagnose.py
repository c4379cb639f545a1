"""vnetdiag diagnose: from a latency symptom to the dropping hop, with evidence."""

from __future__ import annotations

import math
import threading
import time

from vnetdiag.errors import UsageError


def configure(parser, common) -> None:
    parser.add_argument("--from", dest="source", metavar="A",
                        help="where the probe runs: a namespace in any form (name, inode, netns:INODE, pid:PID, "
                             "/proc/PID/ns/net) or a lab node, optionally :ADDRESS")
    parser.add_argument("--to", dest="target", metavar="B",
                        help="where the server runs (same forms); or a far end vnetdiag cannot enter, probed with "
                             "handshakes its kernel answers: a lab VM node, a bare address, NS:ADDRESS of a VM")
    parser.add_argument("--pattern", default="tcp-rr", choices=["tcp-rr", "tcp-crr", "udp-rr", "tcp-syn", "icmp-echo"],
                        help="probe traffic: persistent TCP, a connection per transaction, or UDP; to a far end "
                             "tcp-syn (SYN -> RST or SYN-ACK, the default there) or icmp-echo")
    parser.add_argument("--streams", type=int, default=16, help="concurrent probe streams")
    parser.add_argument("--duration", type=float, default=5.0, metavar="S", help="measured window in seconds (default 5)")
    parser.add_argument("--request-bytes", type=int, default=1, metavar="B", help="bytes in each request")
    parser.add_argument("--response-bytes", type=int, default=1, metavar="B", help="bytes in each response")
    parser.add_argument("--no-trace", action="store_true", help="do not trace kernel drops (counters only)")
    parser.add_argument("--capture", action="store_true",
                        help="also capture (bounded tcpdump) at both ends and analyse retransmissions")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help="the probe server's port at B (default: one the kernel picks for each run, so no "
                             "earlier connection's packets are taken for the probe's)")
    parser.add_argument("--backend", choices=("auto", "ebpf", "tracefs"), default="auto",
                        help="drop tracer: eBPF (each dropped packet's namespace, device and flow), tracefs "
                             "(device only), or auto (eBPF when it can run here)")
    parser.add_argument("--report", metavar="FILE.html",
                        help="write a self-contained HTML report (default: no report)")
    from vnetdiag.cli import fleet_diagnose  # --hosts, --via: HOST:A forms across hosts

    fleet_diagnose.add_host_options(parser)
    parser.add_argument("--save-bundle", metavar="FILE",
                        help="also write everything the verdicts were drawn from (gzip JSON), to replay them")
    parser.add_argument("--replay", metavar="FILE",
                        help="no probe: the verdicts of a saved bundle (--from/--to not needed)")


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

    from vnetdiag.cli import fleet_diagnose

    if fleet_diagnose.names_hosts(args):
        return fleet_diagnose.run(args, out)

    from vnetdiag.diagnose import diagnose

    if args.replay:
        from vnetdiag.collect import bundlefile
        from vnetdiag.diagnose import diagnosis_of

        return _show(diagnosis_of(bundlefile.read(args.replay)), args, out)
    if not (args.source and args.target):
        raise UsageError("diagnose needs --from A and --to B", hint="e.g. vnetdiag diagnose --from vm1 --to vm3")
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
                          backend=args.backend, port=args.port, progress=progress, stop=stop)
    finally:
        countdown.stop()
    if args.save_bundle and result.bundle is not None:
        from vnetdiag.collect import bundlefile

        bundlefile.write(args.save_bundle, result.bundle)
        out.info(f"diagnose: bundle written to {args.save_bundle}")
    return _show(result, args, out)


def _show(result, args, out) -> int:
    from vnetdiag.diagnose import document
    from vnetdiag.report import diagnosis as render

    if args.report:
        with open(args.report, "w") as f:
            f.write(render.html(result))
        out.info(f"diagnose: report written to {args.report}")
    if out.json_mode:
        out.document(document(result))
    else:
        render.terminal(result, out.console)
    return 1 if result.diagnosis.problem_found else 0
