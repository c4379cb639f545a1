"""The client's streams: one thread per stream, one loop per pattern, run by a
worker (probe/worker.py).

Each stream thread enters the target namespace for its whole life (setns is
per thread), opens its sockets there, waits for the common start time, and
records latencies in nanoseconds into per-second chunks that it hands to the
worker through a deque (append/popleft are atomic, so no lock on the hot path).
A chunk holds the samples that *completed* in that second of the measured
period; warm-up samples are dropped.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
import struct
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vnetdiag.model.probe import SlowTransaction
from vnetdiag.probe import protocol as p
from vnetdiag.probe import tcpstats
from vnetdiag.system import netns

if TYPE_CHECKING:
    from vnetdiag.probe.worker import Bsp

_NS = 1_000_000_000
_RCVTIMEO = struct.pack("ll", 0, 200_000)  # blocking reads wake every 200 ms to check for stop
LINGER_RST = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close() sends a RST and forgets the connection."""
_MAX_SLOW_PER_STREAM = 2000


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    worker: int
    stream_ids: tuple[int, ...]
    pattern: str
    address: tuple
    family: int
    udp_port: int
    ticket: bytes
    netns_path: str | None
    request_bytes: int
    response_bytes: int
    stream_rate_per_s: float | None
    total_rate_per_s: float | None
    compute_ms: float
    slow_ns: int
    udp_timeout_ns: int
    connect_timeout_s: float
    raw: bool = False
    """Also record each transaction's completion time (for the raw log)."""


@dataclass
class Chunk:
    """What one stream measured in one second of the measured period."""

    stream: int
    interval: int
    latency_ns: array
    uncorrected_ns: array
    connect_ns: array
    errors: int = 0
    slow: list = field(default_factory=list)
    bsp_step_ns: array | None = None
    done_ns: array = field(default_factory=lambda: array("q"))
    """Completion times (monotonic ns), only when the raw log is asked for."""


@dataclass
class StreamEnd:
    stream: int
    worker: int
    error: str | None
    udp: dict | None


class Timing:
    def __init__(self) -> None:
        self.t0_ns = 0
        self.measure_ns = 0
        self.end_ns = 0


def _wait_until(t_ns: int, clock) -> None:
    """Sleep until shortly before ``t_ns``, then spin: a paced send leaves on time
    (sleep alone wakes 50-100 us late, which corrected latency would count)."""
    left = t_ns - clock()
    if left > 300_000:
        time.sleep((left - 250_000) / _NS)
    while clock() < t_ns:
        pass


class StreamError(Exception):
    """A stream failed (one line, for the user)."""


class _Stopped(StreamError):
    """Told to stop while waiting: not a failure."""


def open_tcp(family: int, address: tuple, timeout_s: float) -> socket.socket:
    """A connected TCP socket with TCP_NODELAY (request/response: no Nagle delay)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout_s)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def close_with_rst(sock: socket.socket) -> None:
    """Close a probe connection with a RST: nothing of it travels after the
    window (no FIN to retransmit, no answer to the peer's FIN), so what the
    tracer saw during the window is everything the probe's flows sent."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()


def _connect(spec: WorkerSpec, timeout_s: float) -> socket.socket:
    return open_tcp(spec.family, spec.address, timeout_s)


CONNECT_ATTEMPTS = 4
"""Connection attempts before a stream gives up on an unreachable answer. A
router that refuses some SYNs (a policy route, a rate-limited path) answers
with ICMP unreachable and the connect fails at once; that is the path's
symptom, counted as an error, not a reason to stop every stream. A target
that is really unreachable fails after this many, a few tenths of a second."""
_REFUSALS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})


def connect_retrying(connect, timeout_s: float, on_refused=lambda exc: None, pause_s: float = 0.1):
    """``connect(timeout_s)`` again after an unreachable answer, up to
    CONNECT_ATTEMPTS within ``timeout_s``; ``on_refused`` sees each refusal
    but the last, which is raised."""
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return connect(max(deadline - time.monotonic(), 0.05))
        except OSError as exc:
            if exc.errno not in _REFUSALS or attempt == CONNECT_ATTEMPTS or time.monotonic() + pause_s > deadline:
                raise
            on_refused(exc)
            time.sleep(pause_s)
    raise AssertionError("unreachable")


class Stream:
    def __init__(self, sid: int, spec: WorkerSpec, timing: Timing, stop: threading.Event,
                 go: threading.Event, outbox: collections.deque, bsp: Bsp | None) -> None:
        self.sid = sid
        self.spec = spec
        self.t = timing
        self.stop = stop
        self.go = go
        self.outbox = outbox
        self.bsp = bsp
        self.ready = threading.Event()
        self.error: str | None = None
        self.udp: dict | None = None
        self.sock: socket.socket | None = None
        self.server_retrans = 0
        self.client_retrans = 0
        self.slow_count = 0
        self.setup_errors = 0
        """Connection attempts refused before the window (counted in its first chunk)."""
        self._new_chunk(0)

    # ---- chunks ---------------------------------------------------------------

    def _new_chunk(self, interval: int) -> None:
        self.chunk = Chunk(stream=self.sid, interval=interval, latency_ns=array("q"),
                           uncorrected_ns=array("q"), connect_ns=array("q"))
        self.next_flush_ns = self.t.measure_ns + (interval + 1) * _NS if self.t.measure_ns else 0

    def _roll(self, t_ns: int) -> None:
        """Hand over the current chunk if ``t_ns`` is past its second."""
        interval = (t_ns - self.t.measure_ns) // _NS
        self.outbox.append(self.chunk)
        self._new_chunk(max(interval, self.chunk.interval + 1))

    def flush(self) -> None:
        self.outbox.append(self.chunk)

    def _count_setup_error(self) -> None:
        self.setup_errors += 1

    # ---- life -----------------------------------------------------------------

    def run(self) -> None:
        ctx = netns.entered(self.spec.netns_path) if self.spec.netns_path else contextlib.nullcontext()
        try:
            with ctx:
                try:
                    self.setup()
                finally:
                    self.ready.set()
                self.go.wait()
                if self.stop.is_set():
                    return
                _wait_until(self.t.t0_ns, time.monotonic_ns)  # all streams start together
                self._new_chunk(0)
                self.chunk.errors += self.setup_errors
                loop = {"tcp-rr": self.loop_rr, "tcp-crr": self.loop_crr, "udp-rr": self.loop_udp,
                        "bsp": self.loop_bsp}[self.spec.pattern]
                loop()
        except _Stopped:
            pass
        except StreamError as exc:
            self.error = str(exc)
        except OSError as exc:
            self.error = f"stream {self.sid}: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - reported as this stream's error, never lost
            self.error = f"stream {self.sid}: {type(exc).__name__}: {exc}"
        finally:
            if self.bsp is not None and self.error:
                self.bsp.barrier.abort()
            if self.sock is not None:
                close_with_rst(self.sock)
            self.flush()

    def setup(self) -> None:
        s = self.spec
        if s.pattern in ("tcp-rr", "bsp"):
            try:
                self.sock = connect_retrying(lambda t: _connect(s, t), s.connect_timeout_s,
                                             on_refused=lambda _e: self._count_setup_error())
            except OSError as exc:
                raise StreamError(f"stream {self.sid}: cannot connect to {s.address[0]} port "
                                  f"{s.address[1]}: {exc.strerror or exc}") from None
            self.sock.settimeout(None)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _RCVTIMEO)
            self.sock.sendall(p.encode_attach(s.ticket))
            self.server_retrans = self._server_info(self.sock)
        elif s.pattern == "udp-rr":
            self.sock = socket.socket(s.family, socket.SOCK_DGRAM)
            self.sock.connect((s.address[0], s.udp_port) + tuple(s.address[2:]))

    # ---- blocking I/O helpers -------------------------------------------------

    def _recv_exact(self, sock: socket.socket, view: memoryview, n: int, got: int = 0) -> None:
        """Fill ``view[:n]`` (``got`` bytes are there already); an ERROR frame from
        the server becomes a StreamError with its text."""
        while got < n:
            if got and view[0] == p.MsgType.ERROR:
                self._server_error(sock, bytes(view[:got]))
            try:
                r = sock.recv_into(view[got:], n - got)
            except (BlockingIOError, TimeoutError):
                if self.stop.is_set():
                    raise _Stopped() from None
                continue
            if r == 0:
                raise StreamError(f"stream {self.sid}: the server closed the connection")
            got += r

    def _server_error(self, sock: socket.socket, head: bytes) -> None:
        if head[0] == p.MsgType.ERROR:
            _, length = p.HEADER.unpack_from(head)
            body = head[p.HEADER.size:]
            with contextlib.suppress(OSError):
                sock.settimeout(1.0)
                while len(body) < length:
                    more = sock.recv(length - len(body))
                    if not more:
                        break
                    body += more
            code, text = p.decode_error(body)
            raise StreamError(f"stream {self.sid}: the server refused: {text}")
        raise StreamError(f"stream {self.sid}: unexpected reply from the server (type {head[0]})")

    def _server_info(self, sock: socket.socket) -> int:
        """The server's tcpi_total_retrans for this connection (one extra round trip)."""
        sock.sendall(p.frame(p.MsgType.INFO_REQUEST))
        buf = bytearray(p.HEADER.size + 6)
        self._recv_exact(sock, memoryview(buf), len(buf))
        if buf[0] != p.MsgType.INFO:
            self._server_error(sock, bytes(buf))
        return p.decode_info(bytes(buf[p.HEADER.size:])).total_retrans

    def _evidence(self, sock: socket.socket | None, phase: str, latency_ns: int, t_done: int,
                  ask_server: bool, client_delta: int | None = None, backoff: int | None = None) -> None:
        if self.slow_count >= _MAX_SLOW_PER_STREAM:
            return
        self.slow_count += 1
        server_delta = None
        if sock is not None:
            info = tcpstats.tcp_info(sock)
            if info is not None:
                client_delta = info.total_retrans - self.client_retrans
                self.client_retrans = info.total_retrans
                backoff = info.backoff
            if ask_server:
                try:
                    total = self._server_info(sock)
                    server_delta, self.server_retrans = total - self.server_retrans, total
                except (OSError, StreamError):
                    pass
        self.chunk.slow.append(SlowTransaction(
            stream=self.sid, at_s=(t_done - self.t.measure_ns) / _NS, phase=phase,  # type: ignore[arg-type]
            latency_us=latency_ns / 1000, client_retrans_delta=client_delta,
            server_retrans_delta=server_delta, client_backoff=backoff))

    def _pacing(self) -> tuple[int | None, int]:
        rate = self.spec.stream_rate_per_s
        if not rate:
            return None, self.t.t0_ns
        # Spread the streams' schedules evenly over one period of the total rate.
        offset = int(self.sid * _NS / (self.spec.total_rate_per_s or rate))
        return int(_NS / rate), self.t.t0_ns + offset

    # ---- patterns -------------------------------------------------------------

    def loop_rr(self) -> None:
        sock = self.sock
        assert sock is not None
        req = p.encode_request(self.spec.response_bytes, bytes(max(0, self.spec.request_bytes)))
        req_len = len(req)
        expect = p.HEADER.size + self.spec.response_bytes
        buf = bytearray(expect)
        view = memoryview(buf)
        clock = time.monotonic_ns
        send, recv_into = sock.send, sock.recv_into
        measure, end, slow_ns = self.t.measure_ns, self.t.end_ns, self.spec.slow_ns
        period, intended = self._pacing()
        stopped = self.stop.is_set
        record = self.chunk.latency_ns.append
        record_done, raw = self.chunk.done_ns.append, self.spec.raw
        next_flush = self.next_flush_ns
        response = p.MsgType.RESPONSE
        # The hot loop: locals only, one send and (usually) one recv per transaction.
        while not stopped():
            if period is not None:
                _wait_until(intended, clock)
            t_send = clock()
            if t_send >= end:
                break
            sent = send(req)
            if sent != req_len:
                sock.sendall(req[sent:])
            try:
                got = recv_into(view, expect)
                if got == 0:
                    raise StreamError(f"stream {self.sid}: the server closed the connection")
            except BlockingIOError:
                got = 0
            if got < expect:
                self._recv_exact(sock, view, expect, got)
            t_done = clock()
            if buf[0] != response:
                self._server_error(sock, bytes(buf))
            if period is not None:
                start = intended
                intended += period
            else:
                start = t_send
            if t_send < measure:
                continue
            if t_done >= next_flush:
                self._roll(t_done)
                record, next_flush = self.chunk.latency_ns.append, self.next_flush_ns
                record_done = self.chunk.done_ns.append
            lat = t_done - start
            record(lat)
            if raw:
                record_done(t_done)
            if period is not None:
                self.chunk.uncorrected_ns.append(t_done - t_send)
            if lat >= slow_ns:
                self._evidence(sock, "transaction", lat, t_done, ask_server=True)

    def loop_crr(self) -> None:
        s = self.spec
        head = p.encode_attach(s.ticket) + p.encode_request(s.response_bytes, bytes(s.request_bytes))
        expect = p.HEADER.size + s.response_bytes
        buf = bytearray(expect)
        view = memoryview(buf)
        clock = time.monotonic_ns
        measure, end, slow_ns = self.t.measure_ns, self.t.end_ns, s.slow_ns
        period, intended = self._pacing()
        while not self.stop.is_set():
            if period is not None:
                _wait_until(intended, clock)
            t_send = clock()
            if t_send >= end:
                break
            start = intended if period is not None else t_send
            if period is not None:
                intended += period
            sock = socket.socket(s.family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # RST on close: no TIME_WAIT, so thousands of connects per second do
                # not run out of ephemeral ports.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                sock.settimeout(s.connect_timeout_s)
                try:
                    sock.connect(s.address)
                except OSError:
                    if t_send >= measure:
                        if clock() >= self.next_flush_ns:
                            self._roll(clock())
                        self.chunk.errors += 1
                    self.stop.wait(0.01)
                    continue
                t_conn = clock()
                syn_info = tcpstats.tcp_info(sock)  # SYN retransmits show here
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _RCVTIMEO)
                sock.sendall(head)
                self._recv_exact(sock, view, expect)
                t_done = clock()
                if buf[0] != p.MsgType.RESPONSE:
                    self._server_error(sock, bytes(buf))
                if t_send < measure:
                    continue
                if t_done >= self.next_flush_ns:
                    self._roll(t_done)
                lat = t_done - start
                self.chunk.latency_ns.append(lat)
                if self.spec.raw:
                    self.chunk.done_ns.append(t_done)
                self.chunk.connect_ns.append(t_conn - t_send)
                if period is not None:
                    self.chunk.uncorrected_ns.append(t_done - t_send)
                if t_conn - t_send >= slow_ns:
                    self._evidence(None, "connect", t_conn - t_send, t_done, ask_server=False,
                                   client_delta=syn_info.total_retrans if syn_info else None,
                                   backoff=syn_info.backoff if syn_info else None)
                if t_done - t_conn >= slow_ns:
                    self.client_retrans = syn_info.total_retrans if syn_info else 0
                    self.server_retrans = 0
                    self._evidence(sock, "transaction", t_done - t_conn, t_done, ask_server=True)
            except OSError:
                if t_send >= measure:
                    self.chunk.errors += 1
            finally:
                sock.close()

    def loop_udp(self) -> None:
        s = self.spec
        sock = self.sock
        assert sock is not None
        clock = time.monotonic_ns
        measure, end, timeout = self.t.measure_ns, self.t.end_ns, s.udp_timeout_ns
        period, intended = self._pacing()
        unpack = p.UDP_RESPONSE.unpack_from
        seq = 0
        sent = replies = late = duplicate = reordered = 0
        pending: set[int] = set()  # measured requests past their deadline, not answered yet
        answered: set[int] = set()
        highest = 0
        while not self.stop.is_set():
            if period is not None:
                _wait_until(intended, clock)
            t_send = clock()
            if t_send >= end:
                break
            start = intended if period is not None else t_send
            if period is not None:
                intended += period
            seq += 1
            measured = t_send >= measure
            if measured:
                sent += 1
            sock.send(p.encode_udp_request(s.ticket, seq if measured else seq | p.UDP_WARMUP,
                                           s.request_bytes, s.response_bytes))
            deadline = t_send + timeout
            while True:
                remaining = deadline - clock()
                if remaining <= 0:
                    if measured:
                        pending.add(seq)
                    break
                sock.settimeout(remaining / _NS)
                try:
                    data = sock.recv(p.UDP_MAX_PAYLOAD)
                except TimeoutError:
                    continue
                except ConnectionRefusedError:  # ICMP port unreachable: the server is gone
                    continue
                if len(data) < p.UDP_RESPONSE.size:
                    continue
                (rseq,) = unpack(data)
                rseq &= ~p.UDP_WARMUP
                if rseq in answered:
                    duplicate += 1
                    continue
                if rseq < highest:
                    reordered += 1
                if rseq in pending:
                    pending.discard(rseq)
                    answered.add(rseq)
                    late += 1
                    highest = max(highest, rseq)
                    continue
                if rseq != seq:
                    continue  # a warm-up straggler
                highest = seq
                t_done = clock()
                if not measured:
                    break
                answered.add(seq)
                replies += 1
                if t_done >= self.next_flush_ns:
                    self._roll(t_done)
                lat = t_done - start
                self.chunk.latency_ns.append(lat)
                if self.spec.raw:
                    self.chunk.done_ns.append(t_done)
                if period is not None:
                    self.chunk.uncorrected_ns.append(t_done - t_send)
                if lat >= s.slow_ns:
                    self._evidence(None, "transaction", lat, t_done, ask_server=False)
                break
            if len(answered) > 200_000:  # keep memory bounded on long runs
                answered = {x for x in answered if x > seq - 100_000}
        self.udp = {"sent": sent, "replies": replies, "lost": len(pending), "late": late,
                    "duplicate": duplicate, "reordered": reordered}

    def loop_bsp(self) -> None:
        bsp = self.bsp
        sock = self.sock
        assert bsp is not None and sock is not None
        req = p.encode_request(self.spec.response_bytes, bytes(self.spec.request_bytes))
        expect = p.HEADER.size + self.spec.response_bytes
        view = memoryview(bytearray(expect))
        clock = time.monotonic_ns
        rank = self.spec.stream_ids.index(self.sid)
        compute_s = self.spec.compute_ms / 1000
        while True:
            try:
                bsp.barrier.wait()
            except threading.BrokenBarrierError:
                return  # another rank failed; its error is the one to report
            if not bsp.running:
                break
            time.sleep(compute_s)
            t_send = clock()
            sock.sendall(req)
            self._recv_exact(sock, view, expect)
            t_done = clock()
            if view[0] != p.MsgType.RESPONSE:
                self._server_error(sock, bytes(view))
            lat = t_done - t_send
            bsp.exchange_ns[rank] = lat
            if bsp.measuring:
                if t_done >= self.next_flush_ns:
                    self._roll(t_done)
                self.chunk.latency_ns.append(lat)
                if self.spec.raw:
                    self.chunk.done_ns.append(t_done)
                if lat >= self.spec.slow_ns:
                    self._evidence(sock, "transaction", lat, t_done, ask_server=True)
            try:
                bsp.barrier.wait()
            except threading.BrokenBarrierError:
                return
            if rank == 0 and bsp.steps:
                if self.chunk.bsp_step_ns is None:
                    self.chunk.bsp_step_ns = array("q")
                self.chunk.bsp_step_ns.extend(bsp.steps)
                bsp.steps = array("q")
