"""``run_probe``: open a session with a probe server, run the streams, and turn
what they measured into a ``ProbeResult``.

Data flow: a control connection authenticates and gets a ticket; workers (a
thread for one worker, spawned processes for more) run the stream threads and
send per-second chunks of latencies; ``_Aggregate`` records them into HDR
histograms per stream and per interval (merged for the total); the tail
analysis labels the slow transactions; the TCP MIB deltas of the probe's
namespace (and, from the server, of the server's) close the account.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
from multiprocessing.connection import wait
from pathlib import Path
from typing import TextIO

from vnetdiag.analyze import tails as tails_analysis
from vnetdiag.errors import BadInputError, UsageError
from vnetdiag.model.probe import (PATTERNS, BspStats, ProbeResult, StreamStats, TcpCounters, UdpCounts)
from vnetdiag.probe import histograms as H
from vnetdiag.probe import protocol as p
from vnetdiag.probe import tcpstats
from vnetdiag.probe.server import DEFAULT_PORT
from vnetdiag.probe.streams import StreamEnd, WorkerSpec, close_with_rst, connect_retrying, open_tcp
from vnetdiag.probe.worker import worker_main
from vnetdiag.system import netns as netns_mod

Progress = Callable[[float, float, int], None]
"""progress(elapsed_s, total_s, transactions_so_far), called a few times a second."""

_NS = 1_000_000_000
_SESSION_MARGIN_S = 60
_MAX_SLOW_REPORTED = 500


def _in_ns(path: Path | None):
    return netns_mod.entered(path) if path is not None else contextlib.nullcontext()


def _validate(*, pattern, streams, workers, duration_s, warmup_s, request_bytes, response_bytes,
              rate_per_s, compute_ms, slow_threshold_ms, udp_timeout_ms) -> None:
    if pattern not in PATTERNS:
        raise UsageError(f"unknown pattern {pattern!r}", hint=f"use one of {', '.join(PATTERNS)}")
    if not 1 <= streams <= 4096:
        raise UsageError(f"--streams {streams}: need between 1 and 4096 streams")
    if not 1 <= workers <= streams:
        raise UsageError(f"--workers {workers}: need between 1 and the number of streams ({streams})")
    if pattern == "bsp" and workers != 1:
        raise UsageError("bsp runs its ranks in lockstep inside one worker", hint="drop --workers")
    if not duration_s > 0:
        raise UsageError(f"--duration {duration_s}: must be more than 0 seconds")
    if warmup_s < 0:
        raise UsageError(f"--warmup {warmup_s}: must not be negative")
    if request_bytes < 0 or response_bytes < 0:
        raise UsageError("--request-bytes and --response-bytes must not be negative")
    if pattern == "udp-rr" and max(request_bytes, response_bytes) > p.UDP_MAX_PAYLOAD:
        raise UsageError(f"udp-rr messages of {max(request_bytes, response_bytes)} bytes do not fit a UDP "
                         f"datagram", hint=f"use at most {p.UDP_MAX_PAYLOAD} bytes, or tcp-rr for larger ones")
    if rate_per_s is not None and not rate_per_s > 0:
        raise UsageError(f"--rate {rate_per_s}: must be a positive number of transactions per second",
                         hint="leave --rate out for closed-loop (as fast as possible)")
    if compute_ms < 0 or slow_threshold_ms <= 0 or udp_timeout_ms <= 0:
        raise UsageError("--compute-ms must not be negative; --slow-ms and --udp-timeout-ms must be positive")


class _Control:
    """The session's control connection (blocking, with timeouts)."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where
        self.decoder = p.FrameDecoder(1 << 16)

    def read(self, timeout_s: float = 10.0) -> tuple[p.MsgType, bytes]:
        self.sock.settimeout(timeout_s)
        while (f := self.decoder.next()) is None:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise BadInputError(f"{self.where} does not answer like a vnetdiag probe server",
                                    hint="check the port: vnetdiag serve listens on 7735 by default") from None
            except OSError as exc:
                raise BadInputError(f"{self.where} closed the connection: {exc.strerror}") from None
            if not data:
                raise BadInputError(f"{self.where} closed the connection during the handshake",
                                    hint="is it a vnetdiag probe server, and below its connection limit?")
            try:
                self.decoder.feed(data)
            except p.ProtocolError:
                raise BadInputError(f"{self.where} does not speak the vnetdiag probe protocol") from None
        if f[0] == p.MsgType.ERROR:
            code, text = p.decode_error(f[1])
            hint = "use the token the server was started with (--token)" if code == p.ErrorCode.AUTH else None
            raise BadInputError(f"{self.where} refused the session: {text}", hint=hint)
        return f

    def handshake(self, *, token: bytes | None, pattern: str, session_s: float, streams: int,
                  request_bytes: int, response_bytes: int) -> p.Welcome:
        self.sock.sendall(p.encode_open())
        kind, body = self.read()
        if kind != p.MsgType.CHALLENGE:
            raise BadInputError(f"{self.where} sent {kind.name} instead of a challenge")
        challenge = p.decode_challenge(body)
        if challenge.token_required and token is None:
            raise BadInputError(f"{self.where} requires a token", hint="pass the server's --token")
        mac = p.compute_mac(token, challenge.nonce) if token is not None else bytes(32)
        self.sock.sendall(p.encode_auth(p.Auth(
            mac=mac, pattern=p.PATTERN_CODES[pattern], duration_ms=int(session_s * 1000),
            streams=min(streams, 0xFFFF), request_bytes=request_bytes, response_bytes=response_bytes)))
        kind, body = self.read()
        if kind != p.MsgType.WELCOME:
            raise BadInputError(f"{self.where} sent {kind.name} instead of a welcome")
        return p.decode_welcome(body)

    def stats(self) -> p.Stats | None:
        try:
            self.sock.sendall(p.frame(p.MsgType.STATS_REQUEST))
            kind, body = self.read(timeout_s=5.0)
            return p.decode_stats(body) if kind == p.MsgType.STATS else None
        except (OSError, BadInputError, p.ProtocolError):
            return None


def _open_control(host: str, port: int, timeout_s: float) -> tuple[socket.socket, tuple, int]:
    where = f"{host} port {port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInputError(f"cannot resolve target {host!r}: {exc.strerror}",
                            hint="give an IP address or a name this namespace can resolve") from None
    family, _, _, _, address = infos[0]
    try:
        sock = connect_retrying(lambda t: open_tcp(family, address, t), timeout_s)
    except ConnectionRefusedError:
        raise BadInputError(f"connection to {where} refused: no probe server listens there",
                            hint="start one with: vnetdiag serve --listen ADDRESS:PORT [--netns NS]") from None
    except TimeoutError:
        raise BadInputError(f"{where} is unreachable: no answer within {timeout_s:g} s",
                            hint="check the address, the route and firewalls on the way") from None
    except OSError as exc:
        if exc.errno in (_errno.ENETUNREACH, _errno.EHOSTUNREACH, _errno.EADDRNOTAVAIL):
            raise BadInputError(f"{where} is unreachable: {exc.strerror}",
                                hint="check the address and that --netns is the namespace to probe from") from None
        raise BadInputError(f"cannot connect to {where}: {exc.strerror}") from None
    return sock, address, family


class _Aggregate:
    """Histograms per stream, per interval (merged), and the rest of the account."""

    def __init__(self, streams: int, hlog: H.IntervalLog | None, raw: TextIO | None = None) -> None:
        self.latency = [H.new_histogram() for _ in range(streams)]
        self.uncorrected = H.new_histogram()
        self.connect = H.new_histogram()
        self.bsp_steps = H.new_histogram()
        self.bsp_comm_ns = 0
        self.errors = [0] * streams
        self.transactions = 0
        self.slow: list = []
        self.hlog = hlog
        self.intervals: dict[int, object] = {}
        self.interval_max_ns: dict[int, int] = {}
        """Exact largest latency per interval (the histograms round to their buckets)."""
        self.watermark = [0] * streams  # per stream: intervals before this one are complete
        self.written = 0
        self.raw = raw
        self.measure_ns = 0

    def add(self, chunks) -> None:
        for c in chunks:
            if len(c.latency_ns):
                H.record_many(self.latency[c.stream], c.latency_ns)
                if self.hlog is not None:
                    hist = self.intervals.setdefault(c.interval, H.new_histogram())
                    H.record_many(hist, c.latency_ns)
                    self.interval_max_ns[c.interval] = max(self.interval_max_ns.get(c.interval, 0), max(c.latency_ns))
            if len(c.uncorrected_ns):
                H.record_many(self.uncorrected, c.uncorrected_ns)
            if len(c.connect_ns):
                H.record_many(self.connect, c.connect_ns)
            if c.bsp_step_ns is not None and len(c.bsp_step_ns):
                H.record_many(self.bsp_steps, c.bsp_step_ns)
                self.bsp_comm_ns += sum(c.bsp_step_ns)
            if self.raw is not None and len(c.done_ns):
                self._write_raw(c)
            self.transactions += len(c.latency_ns)
            self.errors[c.stream] += c.errors
            self.slow.extend(c.slow)
            self.watermark[c.stream] = max(self.watermark[c.stream], c.interval)
        self._write_complete(min(self.watermark))

    def _write_raw(self, c) -> None:
        done = (np.frombuffer(c.done_ns, dtype=np.int64) - self.measure_ns) / 1e9
        lat = np.frombuffer(c.latency_ns, dtype=np.int64) / 1000
        self.raw.write("".join(f"{c.stream},{t:.6f},{v:.3f}\n" for t, v in zip(done.tolist(), lat.tolist())))

    def _write_complete(self, upto: int) -> None:
        if self.hlog is None:
            return
        while self.written < upto:
            hist = self.intervals.pop(self.written, None) or H.new_histogram()
            self.hlog.write(hist, float(self.written), float(self.written + 1),
                            max_ns=self.interval_max_ns.pop(self.written, 0))
            self.written += 1

    def finish(self, measured_s: float) -> None:
        if self.hlog is None:
            return
        last = max([self.written, *self.intervals.keys()]) if self.intervals else self.written - 1
        while self.written <= last:
            hist = self.intervals.pop(self.written, None) or H.new_histogram()
            self.hlog.write(hist, float(self.written), min(float(self.written + 1), max(measured_s, self.written + 1e-3)),
                            max_ns=self.interval_max_ns.pop(self.written, 0))
            self.written += 1


def run_probe(target: str, *, port: int = DEFAULT_PORT, pattern: str = "tcp-rr", streams: int = 1,
              workers: int = 1, duration_s: float = 10.0, warmup_s: float = 1.0, request_bytes: int = 1,
              response_bytes: int = 1, rate_per_s: float | None = None, netns: str | None = None,
              token: str | bytes | None = None, compute_ms: float = 1.0, slow_threshold_ms: float = 10.0,
              udp_timeout_ms: float = 100.0, connect_timeout_s: float = 10.0,
              hlog: TextIO | None = None, raw: TextIO | None = None, progress: Progress | None = None,
              stop: threading.Event | None = None,
              on_phase: Callable[[str], None] | None = None) -> ProbeResult:
    """Run one probe against a ``vnetdiag serve`` server and return what it measured.

    ``netns``: the namespace to probe from (a name, an inode, or a path). ``hlog``:
    an open text file for the HdrHistogram interval log; ``raw``: one for the raw
    log, a CSV line per transaction: stream, completion time (s since the
    measured period began), latency (us). ``stop``: set it to end
    the run early (as Ctrl-C does); the result then has ``interrupted=True``.
    KeyboardInterrupt during the run also ends it early with partial results.
    ``on_phase("start")`` is called when every stream is connected, just before
    they start; ``on_phase("end")`` when they have all stopped, before the final
    exchange on the control connection: between the two, the session's only
    traffic is the streams' (what a test comparing drop counters needs).
    """
    _validate(pattern=pattern, streams=streams, workers=workers, duration_s=duration_s, warmup_s=warmup_s,
              request_bytes=request_bytes, response_bytes=response_bytes, rate_per_s=rate_per_s,
              compute_ms=compute_ms, slow_threshold_ms=slow_threshold_ms, udp_timeout_ms=udp_timeout_ms)
    if pattern == "udp-rr":
        response_bytes = max(response_bytes, p.UDP_RESPONSE.size)
        request_bytes = max(request_bytes, p.UDP_REQUEST.size)
    token_b = token.encode() if isinstance(token, str) else token
    ns_path = netns_mod.resolve(netns) if netns else None
    with _in_ns(ns_path):
        ctl_sock, address, family = _open_control(target, port, connect_timeout_s)
        rto_min, rto_source = tcpstats.rto_min_ms(address[0])
        syn_linear = tcpstats.syn_linear_timeouts()
        mib_before = tcpstats.read_mib()
        ns_inode = netns_mod.current_inode()
    control = _Control(ctl_sock, f"{target} port {port}")
    try:
        welcome = control.handshake(token=token_b, pattern=pattern, streams=streams,
                                    session_s=warmup_s + duration_s + _SESSION_MARGIN_S,
                                    request_bytes=request_bytes, response_bytes=response_bytes)
        return _run_session(
            control, welcome, target=target, port=port, address=address, family=family, pattern=pattern,
            streams=streams, workers=workers, duration_s=duration_s, warmup_s=warmup_s,
            request_bytes=request_bytes, response_bytes=response_bytes, rate_per_s=rate_per_s, netns=netns,
            ns_path=ns_path, ns_inode=ns_inode, compute_ms=compute_ms, slow_threshold_ms=slow_threshold_ms,
            udp_timeout_ms=udp_timeout_ms, connect_timeout_s=connect_timeout_s, hlog=hlog, raw=raw,
            progress=progress, stop=stop, on_phase=on_phase, rto_min=rto_min, rto_source=rto_source, mib_before=mib_before,
            syn_linear=syn_linear)
    finally:
        close_with_rst(ctl_sock)


def _run_session(control: _Control, welcome: p.Welcome, *, target, port, address, family, pattern, streams,
                 workers, duration_s, warmup_s, request_bytes, response_bytes, rate_per_s, netns, ns_path,
                 ns_inode, compute_ms, slow_threshold_ms, udp_timeout_ms, connect_timeout_s, hlog, raw, progress,
                 stop, on_phase, rto_min, rto_source, mib_before, syn_linear) -> ProbeResult:
    specs = [WorkerSpec(
        worker=w, stream_ids=tuple(range(w, streams, workers)), pattern=pattern, address=address,
        family=family, udp_port=welcome.udp_port, ticket=welcome.ticket,
        netns_path=str(ns_path) if ns_path else None, request_bytes=request_bytes,
        response_bytes=response_bytes, stream_rate_per_s=rate_per_s / streams if rate_per_s else None,
        total_rate_per_s=rate_per_s, compute_ms=compute_ms, slow_ns=int(slow_threshold_ms * 1e6),
        udp_timeout_ns=int(udp_timeout_ms * 1e6), connect_timeout_s=connect_timeout_s, raw=raw is not None)
        for w in range(workers)]
    conns, runners = [], []
    if workers == 1:
        parent, child = multiprocessing.Pipe()
        t = threading.Thread(target=worker_main, args=(child, specs[0], True), name="probe-worker", daemon=True)
        t.start()
        conns.append(parent)
        runners.append(t)
    else:
        # fork: workers start in milliseconds and need no importable __main__; the
        # child runs only worker_main, never touching locks of the parent's threads.
        ctx = multiprocessing.get_context("fork")
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, spec), name=f"probe-worker-{spec.worker}",
                               daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            runners.append(proc)
    interrupted = False
    agg = _Aggregate(streams, H.IntervalLog(hlog, comment=f"vnetdiag probe {pattern} to {target} port "
                                                          f"{port}; values in ns") if hlog else None,
                     raw=raw)
    if raw is not None:
        raw.write("stream,completed_s,latency_us\n")
    ends: list[StreamEnd] = []
    try:
        # Streams connect in parallel: each has connect_timeout_s, the set a second more.
        _await_ready(conns, connect_timeout_s + 1)
        if on_phase is not None:
            on_phase("start")
        t0 = time.monotonic_ns() + 20_000_000
        agg.measure_ns = t0 + int(warmup_s * _NS)
        for c in conns:
            c.send(("go", t0, int(warmup_s * _NS), int(duration_s * _NS)))
        total_s = warmup_s + duration_s
        live = list(conns)
        stopping = False
        while live:
            try:
                for c in wait(live, timeout=0.2):
                    try:
                        msg = c.recv()
                    except EOFError:
                        live.remove(c)
                        continue
                    if msg[0] == "chunks":
                        agg.add(msg[1])
                    elif msg[0] == "done":
                        ends.extend(msg[1])
                        live.remove(c)
                if stop is not None and stop.is_set() and not stopping:
                    raise KeyboardInterrupt
                if progress is not None:
                    progress(min((time.monotonic_ns() - t0) / _NS, total_s), total_s, agg.transactions)
            except KeyboardInterrupt:
                if stopping:
                    raise
                interrupted = stopping = True
                for c in live:
                    with contextlib.suppress(OSError):
                        c.send(("stop",))
    finally:
        for c in conns:
            with contextlib.suppress(OSError):
                c.send(("stop",))
        for r in runners:
            r.join(timeout=5)
            if isinstance(r, multiprocessing.process.BaseProcess) and r.is_alive():
                r.terminate()
    end_ns = time.monotonic_ns()
    if on_phase is not None:
        on_phase("end")
    measured_s = duration_s if not interrupted else max(0.0, min(duration_s, (end_ns - t0) / _NS - warmup_s))
    agg.finish(measured_s)
    server = control.stats()
    with _in_ns(ns_path):
        mib_after = tcpstats.read_mib()
    return _result(agg, ends, target=target, port=port, pattern=pattern, streams=streams, workers=workers,
                   measured_s=measured_s, warmup_s=warmup_s, request_bytes=request_bytes,
                   response_bytes=response_bytes, rate_per_s=rate_per_s, netns=netns, ns_inode=ns_inode,
                   compute_ms=compute_ms, slow_threshold_ms=slow_threshold_ms, rto_min=rto_min,
                   rto_source=rto_source, mib_before=mib_before, mib_after=mib_after, server=server,
                   interrupted=interrupted, syn_linear=syn_linear)


def _await_ready(conns, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(conns)
    while pending:
        ready = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise BadInputError(f"the streams could not connect within {timeout_s:g} s",
                                hint="check the path; fewer --streams may help")
        for c in ready:
            try:
                kind, text = c.recv()
            except EOFError:
                raise BadInputError("a probe worker died while connecting its streams") from None
            if kind == "error":
                raise BadInputError(text)
            pending.remove(c)


_SHORT_SHARE = 0.5
"""Under half of what was asked (paced schedule, UDP requests, connect attempts)
is "far fewer than expected": the probe did not measure the path, it hit a wall."""


def shortfall_of(*, transactions: int, errors: int, per_stream, notes, duration_s: float,
                 rate_per_s: float | None, udp: UdpCounts | None) -> str | None:
    """Why a run did not measure the path as asked (``ProbeResult.shortfall``), or
    None. Closed-loop runs have no expected count, so only what can be told from
    the run itself counts: nothing completed, a stream failed or did nothing,
    under half of a paced schedule, of the UDP requests, or of the attempts."""
    if transactions == 0:
        return f"no transaction completed in {duration_s:g} s" + (f" ({notes[0]})" if notes else "")
    if notes:
        return f"{len(notes)} of {len(per_stream)} streams failed: {notes[0]}"
    idle = [s.stream for s in per_stream if s.transactions == 0]
    if idle:
        return f"{len(idle)} of {len(per_stream)} streams completed no transaction (stream {idle[0]} first)"
    if rate_per_s and duration_s > 0 and transactions < _SHORT_SHARE * rate_per_s * duration_s:
        return (f"{transactions} transactions completed of the {rate_per_s * duration_s:.0f} paced at "
                f"{rate_per_s:g}/s")
    if udp is not None and udp.sent and udp.replies < _SHORT_SHARE * udp.sent:
        return f"only {udp.replies} of {udp.sent} UDP requests were answered in time"
    if errors > transactions:
        return f"{errors} attempts failed, {transactions} transactions completed"
    return None


def _result(agg: _Aggregate, ends: list[StreamEnd], *, target, port, pattern, streams, workers, measured_s,
            warmup_s, request_bytes, response_bytes, rate_per_s, netns, ns_inode, compute_ms,
            slow_threshold_ms, rto_min, rto_source, mib_before, mib_after, server, interrupted,
            syn_linear) -> ProbeResult:
    total = H.merged(agg.latency)
    transactions = total.get_total_count()
    duration = measured_s if measured_s > 0 else 1e-9
    rates = [h.get_total_count() / duration for h in agg.latency]
    median_rate = statistics.median(rates) if rates else 0.0
    worker_of = {e.stream: e.worker for e in ends}
    per_stream = tuple(StreamStats(
        stream=i, worker=worker_of.get(i, i % workers), transactions=h.get_total_count(), rate_per_s=rates[i],
        errors=agg.errors[i], p50_us=h.get_value_at_percentile(50) / 1000 if h.get_total_count() else 0.0,
        p99_us=h.get_value_at_percentile(99) / 1000 if h.get_total_count() else 0.0,
        max_us=h.get_max_value() / 1000 if h.get_total_count() else 0.0,
        starved=streams > 1 and rates[i] < 0.5 * median_rate) for i, h in enumerate(agg.latency))
    connects = agg.connect.get_total_count()
    slow = sorted(agg.slow, key=lambda s: -s.latency_us)
    tail_rows = tails_analysis.tail_table(slow, transactions=transactions, connects=connects,
                                          rto_min_ms=rto_min, slow_threshold_ms=slow_threshold_ms,
                                          syn_linear_timeouts=syn_linear)
    notes = [e.error for e in ends if e.error]
    tcp = None
    if pattern != "udp-rr":
        tcp = TcpCounters(
            netns_inode=ns_inode, retrans_segs_delta=mib_after.retrans_segs - mib_before.retrans_segs,
            syn_retrans_delta=mib_after.syn_retrans - mib_before.syn_retrans,
            server_netns_inode=server.netns_inode if server else None,
            server_retrans_segs_delta=server.retrans_segs_delta if server and server.retrans_segs_delta >= 0 else None,
            server_syn_retrans_delta=server.syn_retrans_delta if server and server.syn_retrans_delta >= 0 else None,
            tcp_info_client_retrans=sum(s.client_retrans_delta or 0 for s in agg.slow),
            tcp_info_server_retrans=sum(s.server_retrans_delta or 0 for s in agg.slow))
    udp = None
    if pattern == "udp-rr":
        sums = {k: sum((e.udp or {}).get(k, 0) for e in ends) for k in
                ("sent", "replies", "lost", "late", "duplicate", "reordered")}
        udp = UdpCounts(server_received=server.udp_received if server else None,
                        requests_lost=sums["sent"] - server.udp_received if server else None, **sums)
    bsp = None
    if pattern == "bsp":
        steps = agg.bsp_steps.get_total_count()
        compute_total_ns = steps * compute_ms * 1e6
        eff = compute_total_ns / (compute_total_ns + agg.bsp_comm_ns) if steps and compute_total_ns else 0.0
        bsp = BspStats(steps=steps, ranks=streams, compute_ms=compute_ms,
                       communication=H.summarize(agg.bsp_steps), efficiency=eff)
    short = shortfall_of(transactions=transactions, errors=sum(agg.errors), per_stream=per_stream, notes=notes,
                         duration_s=measured_s, rate_per_s=rate_per_s, udp=udp)
    return ProbeResult(
        shortfall=short,
        target=target, port=port, pattern=pattern, netns=netns, streams=streams, workers=workers,  # type: ignore[arg-type]
        duration_s=measured_s, warmup_s=warmup_s, request_bytes=request_bytes, response_bytes=response_bytes,
        rate_target_per_s=rate_per_s, transactions=transactions, errors=sum(agg.errors),
        rate_per_s=transactions / duration, latency=H.summarize(total),
        latency_uncorrected=H.summarize(agg.uncorrected) if rate_per_s else None,
        connect=H.summarize(agg.connect) if pattern == "tcp-crr" else None,
        histogram=H.log_bins(total), tails=tail_rows, slow=tuple(slow[:_MAX_SLOW_REPORTED]),
        slow_threshold_ms=slow_threshold_ms, rto_min_ms=rto_min, rto_min_source=rto_source,
        syn_linear_timeouts=syn_linear, tcp=tcp,
        udp=udp, bsp=bsp, per_stream=per_stream, interrupted=interrupted, notes=tuple(notes))
