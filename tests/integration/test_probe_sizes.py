"""Request and response sizes across the whole range the server accepts, up to its
own limit (``Limits.max_message_bytes``, 1 MiB by default; for UDP also the
largest datagram, ``UDP_MAX_PAYLOAD``), on loopback.

The sizes sit on the edges where framing meets I/O: the server's read size
(16 KiB: a frame of exactly one read, one byte more, the 16 KiB request that
used to kill the server with RecursionError), the loopback MSS, 64 KiB, and the
limit itself; one past the limit is refused with a message, never half-run.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from vnetdiag.errors import BadInputError, UsageError
from vnetdiag.probe import protocol as p
from vnetdiag.probe.client import run_probe
from vnetdiag.probe.server import _READ_BYTES, Server

LIMIT = p.Limits().max_message_bytes
FRAME_OVERHEAD = p.HEADER.size + 4  # header and the REQUEST's response-length field
ONE_READ = _READ_BYTES - FRAME_OVERHEAD  # payload whose REQUEST frame is exactly one server read


@pytest.fixture(scope="module")
def server():
    srv = Server(port=0)  # the default limits: the sizes below test the real limit
    srv.serve_in_thread()
    yield srv
    srv.stop()


def probe(srv, **kw):
    host, port = srv.address
    return run_probe(host, port=port, duration_s=0.3, warmup_s=0.05, connect_timeout_s=5, **kw)


def assert_clean(srv, r, before_errors):
    assert srv._thread is not None and srv._thread.is_alive(), "the server died"
    assert r.transactions > 0 and r.errors == 0 and not r.notes, r.notes
    assert r.shortfall is None and r.measured
    assert srv.stats().protocol_errors == before_errors


@pytest.mark.parametrize("request_bytes, response_bytes", [
    (0, 0), (1, 1), (1448, 1448),
    (ONE_READ, 1), (ONE_READ + 1, 1), (16384, 1), (1, 16384), (16384, 16384),
    (65536, 65536), (LIMIT - 1, 1), (1, LIMIT), (LIMIT, LIMIT),
])
def test_tcp_rr_sizes_up_to_the_limit(server, request_bytes, response_bytes):
    errors = server.stats().protocol_errors
    r = probe(server, pattern="tcp-rr", request_bytes=request_bytes, response_bytes=response_bytes)
    assert_clean(server, r, errors)
    assert r.request_bytes == request_bytes and r.response_bytes == response_bytes


@pytest.mark.parametrize("pattern", ["tcp-crr", "bsp"])
def test_other_tcp_patterns_at_the_limit(server, pattern):
    errors = server.stats().protocol_errors
    r = probe(server, pattern=pattern, request_bytes=LIMIT, response_bytes=LIMIT, streams=2, compute_ms=0)
    assert_clean(server, r, errors)


@pytest.mark.parametrize("request_bytes, response_bytes", [
    (0, 0), (1472, 1472), (16384, 1), (1, 16384), (16384, 16384), (p.UDP_MAX_PAYLOAD, p.UDP_MAX_PAYLOAD),
])
def test_udp_rr_sizes_up_to_the_largest_datagram(server, request_bytes, response_bytes):
    errors = server.stats().protocol_errors
    r = probe(server, pattern="udp-rr", request_bytes=request_bytes, response_bytes=response_bytes)
    assert_clean(server, r, errors)
    assert r.udp.lost == 0 and r.udp.sent == r.udp.replies == r.transactions
    assert r.udp.server_received == r.udp.sent


def test_one_past_the_limit_is_refused_with_the_limit_named(server):
    with pytest.raises(BadInputError, match=f"the limit is {LIMIT}"):
        probe(server, pattern="tcp-rr", request_bytes=LIMIT + 1)
    with pytest.raises(BadInputError, match=f"the limit is {LIMIT}"):
        probe(server, pattern="tcp-rr", response_bytes=LIMIT + 1)
    with pytest.raises(UsageError, match="do not fit a UDP datagram"):
        probe(server, pattern="udp-rr", response_bytes=p.UDP_MAX_PAYLOAD + 1)
    assert server._thread.is_alive() and server.stats().sessions == 0


# ---- the byte stream itself: partial frames, pipelining, partial writes -------------

def session(srv, rcvbuf_bytes: int | None = None) -> socket.socket:
    """A control connection past the handshake (the server has no token)."""
    s = socket.socket()
    if rcvbuf_bytes is not None:  # before connect: it sets the window the peer sees
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    s.settimeout(10)
    s.connect(srv.address)
    s.sendall(p.encode_open())
    dec = p.FrameDecoder(1 << 16)
    while not (frames := dec.frames(s.recv(4096))):
        pass
    s.sendall(p.encode_auth(p.Auth(mac=bytes(32), pattern=1, duration_ms=30_000, streams=1,
                                   request_bytes=LIMIT, response_bytes=LIMIT)))
    while not dec.frames(s.recv(4096)):
        pass
    assert frames[0][0] == p.MsgType.CHALLENGE
    return s


def recv_exactly(s: socket.socket, n: int, chunk: int = 1 << 20) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        more = s.recv(min(chunk, n - len(buf)))
        assert more, f"closed after {len(buf)} of {n} bytes"
        buf += more
    return bytes(buf)


def responses(data: bytes) -> list[int]:
    dec = p.FrameDecoder(LIMIT)
    frames = dec.frames(data)
    assert dec.pending == 0 and all(k == p.MsgType.RESPONSE for k, _ in frames)
    return [len(body) for _, body in frames]


def test_a_request_sent_one_byte_at_a_time_is_answered(server):
    """Each byte is its own read on the server: the partial frame that made it
    recurse until the stack ran out."""
    with session(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = p.encode_request(777, bytes(300))
        for i in range(len(req)):
            s.send(req[i:i + 1])
        assert responses(recv_exactly(s, p.HEADER.size + 777)) == [777]
    assert server._thread.is_alive()


def test_pipelined_large_requests_get_every_response_in_order(server):
    """Forty 1 MiB-response requests and large payloads in one write: the output
    budget holds some back, and they are answered once the first went out."""
    sizes = [LIMIT if i % 3 == 0 else 1000 * i for i in range(40)]
    burst = b"".join(p.encode_request(n, bytes(50_000)) for n in sizes)
    with session(server) as s:
        t = threading.Thread(target=s.sendall, args=(burst,), daemon=True)
        t.start()  # the server stops reading while its output waits: send and read together
        got = recv_exactly(s, sum(p.HEADER.size + n for n in sizes))
        t.join(10)
        assert responses(got) == sizes
        assert server.stats().buffered_bytes <= 2 * (LIMIT + p.HEADER.size) + 2 * LIMIT
    assert server._thread.is_alive()


def test_a_slow_reader_gets_the_whole_response_through_partial_writes(server):
    """More than the kernel's send buffer can hold towards a small window: the
    server keeps the rest and sends it as the reader makes room."""
    sizes = [LIMIT] * 8 + [5]
    with session(server, rcvbuf_bytes=4096) as s:
        s.sendall(b"".join(p.encode_request(n, b"") for n in sizes))
        deadline = time.monotonic() + 10
        while server.stats().buffered_bytes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stats().buffered_bytes > 0  # the server holds the rest, unsent
        got = recv_exactly(s, sum(p.HEADER.size + n for n in sizes), chunk=65536)
        assert responses(got) == sizes
    assert server._thread.is_alive()


# ---- a probe that failed is never a clean result ------------------------------

def test_server_gone_before_the_start_completes_nothing_and_says_so():
    srv = Server(port=0)
    srv.serve_in_thread()
    r = run_probe(*srv.address[:1], port=srv.address[1], duration_s=0.3, warmup_s=0.05,
                  on_phase=lambda phase: phase == "start" and srv.stop())
    assert r.transactions == 0 and not r.measured
    # the stream's own error follows: closed, or reset, depending on where it was
    assert r.shortfall.startswith("no transaction completed in 0.3 s (stream 0: ")
    assert r.as_document()["shortfall"] == r.shortfall


def test_server_gone_mid_run_is_a_shortfall():
    srv = Server(port=0)
    srv.serve_in_thread()
    timer = threading.Timer(0.3, srv.stop)
    r = run_probe(*srv.address[:1], port=srv.address[1], duration_s=1.0, warmup_s=0, streams=2,
                  on_phase=lambda phase: phase == "start" and timer.start())
    timer.join()
    assert r.transactions > 0  # half a run looks like a measurement...
    assert r.shortfall is not None and "streams failed" in r.shortfall  # ...and is not one
