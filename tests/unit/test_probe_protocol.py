"""The probe protocol, tested by the exact bytes the server state machine emits."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vnetdiag.probe import protocol as p

NONCE = bytes(range(16))
TOKEN = b"s3cret"


def machine(token=TOKEN, limits=None, sessions=None, now=100.0):
    sessions = sessions or p.Sessions(b"k" * 32)
    return p.ServerConnection(limits=limits or p.Limits(max_message_bytes=4096, max_duration_s=60),
                              sessions=sessions, token=token, nonce=NONCE, udp_port=7735, now_s=now), sessions


def auth(token=TOKEN, *, duration_ms=5000, request=1, response=1, pattern="tcp-rr"):
    mac = p.compute_mac(token, NONCE) if token else bytes(32)
    return p.encode_auth(p.Auth(mac=mac, pattern=p.PATTERN_CODES[pattern], duration_ms=duration_ms, streams=2,
                                request_bytes=request, response_bytes=response))


def only_bytes(out):
    return b"".join(x for x in out if isinstance(x, bytes))


def welcome_ticket(out) -> bytes:
    frames = p.FrameDecoder(1 << 16).frames(only_bytes(out))
    assert [k for k, _ in frames] == [p.MsgType.CHALLENGE, p.MsgType.WELCOME]
    return p.decode_welcome(frames[1][1]).ticket


def test_open_is_six_bytes():
    assert p.encode_open() == b"\x01\x00\x00\x00\x01\x01"


def test_challenge_bytes_exact():
    m, _ = machine()
    out = m.receive(p.encode_open(), 100.0)
    assert out == [b"\x02\x00\x00\x00\x1c" + b"\x01\x01" + NONCE + struct.pack("!IIH", 4096, 60000, 7735)]


def test_challenge_without_token_clears_the_flag():
    m, _ = machine(token=None)
    (out,) = m.receive(p.encode_open(), 100.0)
    assert out[6] == 0


def test_mac_is_hmac_sha256_of_context_and_nonce():
    expected = hmac.new(TOKEN, b"vnetdiag-probe/1" + NONCE, hashlib.sha256).digest()
    assert p.compute_mac(TOKEN, NONCE) == expected
    # The token never appears on the wire.
    assert TOKEN not in auth()


def test_good_token_opens_a_session_and_welcome():
    m, sessions = machine()
    m.receive(p.encode_open(), 100.0)
    out = m.receive(auth(), 100.0)
    assert isinstance(out[0], p.SessionOpened)
    data = only_bytes(out)
    assert data[:5] == b"\x04\x00\x00\x00\x16"
    w = p.decode_welcome(data[5:])
    assert w.granted_ms == 5000 and w.udp_port == 7735
    sid, expiry, _ = p.TICKET.unpack(w.ticket)
    assert expiry == 106  # now + 5 s, rounded up
    assert sessions.check(w.ticket, 101.0) is sessions.live[sid]


def test_wrong_token_gets_auth_error_and_close():
    m, sessions = machine()
    m.receive(p.encode_open(), 100.0)
    out = m.receive(auth(b"wrong"), 100.0)
    text = b"token does not match the server's"
    assert out[0] == b"\x05" + struct.pack("!I", 1 + len(text)) + b"\x02" + text
    assert isinstance(out[1], p.Close)
    assert not sessions.live
    assert m.receive(p.encode_request(1, b"x"), 100.0) == []  # closed: nothing more


def test_missing_token_is_refused_when_the_server_has_one():
    m, _ = machine()
    m.receive(p.encode_open(), 100.0)
    out = m.receive(auth(None), 100.0)
    assert out[0][5] == p.ErrorCode.AUTH


def test_request_before_session_is_a_protocol_error():
    m, _ = machine()
    out = m.receive(p.encode_request(1, b"x"), 100.0)
    assert out[0][0] == p.MsgType.ERROR and out[0][5] == p.ErrorCode.PROTOCOL
    assert isinstance(out[1], p.Close)


def test_response_has_exactly_the_asked_size():
    m, _ = machine()
    m.receive(p.encode_open() + auth(), 100.0)
    assert m.receive(p.encode_request(3, b"abc"), 100.0) == [b"\x11\x00\x00\x00\x03\x00\x00\x00"]
    assert m.receive(p.encode_request(0, b""), 100.0) == [b"\x11\x00\x00\x00\x00"]


def test_response_above_the_limit_is_refused_not_sent():
    m, _ = machine()
    m.receive(p.encode_open() + auth(), 100.0)
    out = m.receive(p.encode_request(4097, b""), 100.0)
    assert out[0][5] == p.ErrorCode.TOO_BIG and isinstance(out[1], p.Close)
    assert sum(len(x) for x in out if isinstance(x, bytes)) < 100


def test_session_asking_too_much_is_refused():
    m, _ = machine()
    m.receive(p.encode_open(), 100.0)
    assert m.receive(auth(response=5000), 100.0)[0][5] == p.ErrorCode.TOO_BIG
    m, _ = machine()
    m.receive(p.encode_open(), 100.0)
    assert m.receive(auth(duration_ms=61_000), 100.0)[0][5] == p.ErrorCode.LIMIT


def test_garbage_is_refused_at_the_header():
    m, _ = machine()
    out = m.receive(b"GET / HTTP/1.1\r\n\r\n", 100.0)
    assert out[0][5] == p.ErrorCode.PROTOCOL and isinstance(out[1], p.Close)


def test_oversize_frame_is_refused_before_its_body_arrives():
    m, _ = machine()
    m.receive(p.encode_open() + auth(), 100.0)
    out = m.receive(p.HEADER.pack(p.MsgType.REQUEST, 10_000_000), 100.0)
    assert out[0][5] == p.ErrorCode.TOO_BIG
    assert m.decoder.pending == p.HEADER.size  # nothing of the body was waited for


def test_output_budget_bounds_what_one_read_produces():
    m, _ = machine()
    m.receive(p.encode_open() + auth(), 100.0)
    burst = p.encode_request(4096, b"") * 100
    out = m.receive(burst, 100.0, budget_bytes=10_000)
    assert len(out) == 3  # 3 x 4101 bytes passes the 10,000-byte budget
    assert m.has_pending_input
    total = len(out)
    while m.has_pending_input:
        total += len(m.receive(b"", 100.0, budget_bytes=10_000))
    assert total == 100


def test_data_connection_attaches_with_a_ticket():
    ctl, sessions = machine()
    ticket = welcome_ticket(ctl.receive(p.encode_open() + auth(), 100.0))
    data, _ = machine(sessions=sessions)
    out = data.receive(p.encode_attach(ticket) + p.encode_request(1, b"q"), 100.5)
    assert out == [b"\x11\x00\x00\x00\x01\x00"]
    assert data.state == "data"


def test_forged_expired_or_closed_tickets_are_refused():
    ctl, sessions = machine()
    ticket = welcome_ticket(ctl.receive(p.encode_open() + auth(), 100.0))
    forged = ticket[:-1] + bytes([ticket[-1] ^ 1])
    for t, now in ((forged, 100.5), (ticket, 107.0)):
        data, _ = machine(sessions=sessions)
        assert data.receive(p.encode_attach(t), now)[0][5] == p.ErrorCode.TICKET
    ctl.connection_lost()  # the control connection ends: so does the session
    data, _ = machine(sessions=sessions)
    assert data.receive(p.encode_attach(ticket), 100.5)[0][5] == p.ErrorCode.TICKET


def test_idle_connection_expires_after_the_handshake_timeout():
    m, _ = machine(limits=p.Limits(handshake_timeout_s=2.0))
    assert not m.expired(101.0)
    assert m.expired(102.5)


def test_info_and_stats_are_commands():
    m, _ = machine()
    m.receive(p.encode_open() + auth(), 100.0)
    assert isinstance(m.receive(p.frame(p.MsgType.INFO_REQUEST), 100.0)[0], p.ReadTcpInfo)
    assert isinstance(m.receive(p.frame(p.MsgType.STATS_REQUEST), 100.0)[0], p.ReadStats)
    assert p.encode_info(p.Info(total_retrans=3, backoff=1, retransmits=0)) == \
        b"\x13\x00\x00\x00\x06\x00\x00\x00\x03\x01\x00"


def test_udp_reply_echoes_sequence_and_size():
    ctl, sessions = machine()
    ticket = welcome_ticket(ctl.receive(p.encode_open() + auth(pattern="udp-rr"), 100.0))
    req = p.encode_udp_request(ticket, 42, 64, 16)
    assert len(req) == 64
    reply = p.handle_udp(req, sessions, p.Limits(max_message_bytes=4096), 100.5)
    assert reply == struct.pack("!Q", 42) + bytes(8)
    assert sessions.live[p.TICKET.unpack(ticket)[0]].udp_received == 1


def test_udp_without_valid_ticket_or_asking_too_much_is_dropped():
    ctl, sessions = machine()
    ticket = welcome_ticket(ctl.receive(p.encode_open() + auth(pattern="udp-rr"), 100.0))
    limits = p.Limits(max_message_bytes=4096)
    assert p.handle_udp(p.encode_udp_request(bytes(16), 1, 28, 8), sessions, limits, 100.5) is None
    assert p.handle_udp(p.encode_udp_request(ticket, 1, 28, 5000), sessions, limits, 100.5) is None
    assert p.handle_udp(b"short", sessions, limits, 100.5) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_split_of_the_stream_gives_the_same_bytes(cuts):
    stream = p.encode_open() + auth() + p.encode_request(7, b"abc") + p.encode_request(2, b"")
    whole, _ = machine()
    expected = only_bytes(whole.receive(stream, 100.0))
    split, _ = machine()
    got, pos = b"", 0
    for c in cuts:
        got += only_bytes(split.receive(stream[pos:pos + c], 100.0))
        pos += c
    got += only_bytes(split.receive(stream[pos:], 100.0))
    # The nonce is the same, the ticket differs only by the session secret: compare shapes.
    assert len(got) == len(expected)
    assert got[-(5 + 7 + 5 + 2):] == expected[-(5 + 7 + 5 + 2):]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_garbage_never_crashes_and_always_ends_in_close_or_waiting(data):
    m, _ = machine()
    out = m.receive(data, 100.0)
    assert all(isinstance(x, (bytes, p.Close, p.SessionOpened, p.ReadTcpInfo, p.ReadStats)) for x in out)
    assert m.decoder.pending <= 4096 + 9


@pytest.mark.parametrize("want, payload", [(1, b"x"), (0, b""), (300, b"abc" * 100), (4096, b"")])
def test_fast_path_emits_the_same_bytes_as_the_general_path(want, payload):
    fast, _ = machine()
    slow, _ = machine()
    for m in (fast, slow):
        m.receive(p.encode_open() + auth(), 100.0)
    req = p.encode_request(want, payload)
    assert fast.fast_response(req) == slow.receive(req, 100.0)[0]


def test_fast_path_declines_anything_unusual():
    m, _ = machine()
    assert m.fast_response(p.encode_request(1, b"x")) is None  # no session yet
    m.receive(p.encode_open() + auth(), 100.0)
    assert m.fast_response(p.encode_request(4097, b"")) is None  # over the limit: the error path
    assert m.fast_response(p.encode_request(1, b"x") * 2) is None  # two frames
    assert m.fast_response(p.encode_request(1, b"x")[:-1]) is None  # partial


def test_udp_warmup_requests_are_answered_but_not_counted():
    ctl, sessions = machine()
    ticket = welcome_ticket(ctl.receive(p.encode_open() + auth(pattern="udp-rr"), 100.0))
    limits = p.Limits(max_message_bytes=4096)
    reply = p.handle_udp(p.encode_udp_request(ticket, 5 | p.UDP_WARMUP, 28, 8), sessions, limits, 100.5)
    assert reply == struct.pack("!Q", 5 | p.UDP_WARMUP)
    assert sessions.live[p.TICKET.unpack(ticket)[0]].udp_received == 0
