"""The probe's wire protocol, without I/O: framing, handshake, session tickets.

Every TCP frame is a 5-byte header (type u8, body length u32, network order)
and a body. A session starts on a control connection:

    client OPEN(version)            -> server CHALLENGE(flags, nonce, limits)
    client AUTH(mac, parameters)    -> server WELCOME(ticket, granted duration)
                                       or ERROR(code, text) and close

``mac`` is HMAC-SHA256(token, b"vnetdiag-probe/1" + nonce): the token itself
never crosses the wire. Data connections then send ATTACH(ticket) followed by
REQUEST frames in the same write, so a tcp-crr transaction costs no extra
round trip; UDP datagrams carry the ticket in every request. Tickets are
HMAC-signed by a per-server secret and live only while their session's control
connection is open and its granted duration has not run out.

A REQUEST says how many response bytes it wants; the server answers with
exactly that many and refuses (ERROR, close) anything above its maximum, so it
can never be used to amplify traffic. Unknown frame types, oversize frames and
frames out of order are errors, never buffered.

``ServerConnection`` is the server's per-connection state machine: bytes in,
bytes and commands out, tested by the exact bytes it emits.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass, field

VERSION = 1
HEADER = struct.Struct("!BI")
MAC_CONTEXT = b"vnetdiag-probe/1"
NONCE_BYTES = 16
TICKET = struct.Struct("!II8s")  # session id, expiry (server seconds), truncated mac
TICKET_BYTES = TICKET.size
UDP_REQUEST = struct.Struct("!16sQI")  # ticket, sequence, response length
UDP_RESPONSE = struct.Struct("!Q")  # sequence
UDP_MAX_PAYLOAD = 65507
UDP_WARMUP = 1 << 63
"""Set in a UDP request's sequence number during warm-up: the server answers it
but does not count it, so its count covers exactly the measured period."""


class MsgType(enum.IntEnum):
    OPEN = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    ERROR = 5
    ATTACH = 6
    REQUEST = 0x10
    RESPONSE = 0x11
    INFO_REQUEST = 0x12
    INFO = 0x13
    STATS_REQUEST = 0x14
    STATS = 0x15


class ErrorCode(enum.IntEnum):
    PROTOCOL = 1
    AUTH = 2
    LIMIT = 3
    TOO_BIG = 4
    TICKET = 5
    VERSION = 6


PATTERN_CODES = {"tcp-rr": 1, "tcp-crr": 2, "udp-rr": 3, "bsp": 4}


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is what to tell it before closing."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


# ---- message bodies ---------------------------------------------------------

_CHALLENGE = struct.Struct(f"!BB{NONCE_BYTES}sIIH")  # version, flags, nonce, max msg, max ms, udp port
_AUTH = struct.Struct("!32sBIHII")  # mac, pattern, duration ms, streams, request, response
_WELCOME = struct.Struct(f"!{TICKET_BYTES}sIH")  # ticket, granted ms, udp port
_REQUEST = struct.Struct("!I")  # response length; payload follows
_INFO = struct.Struct("!IBB")  # total_retrans, backoff, retransmits
_STATS = struct.Struct("!QQqq")  # udp requests received, netns inode, retrans segs, syn retrans
FLAG_TOKEN_REQUIRED = 1


@dataclass(frozen=True, kw_only=True)
class Challenge:
    version: int
    token_required: bool
    nonce: bytes
    max_message_bytes: int
    max_duration_ms: int
    udp_port: int


@dataclass(frozen=True, kw_only=True)
class Auth:
    mac: bytes
    pattern: int
    duration_ms: int
    streams: int
    request_bytes: int
    response_bytes: int


@dataclass(frozen=True, kw_only=True)
class Welcome:
    ticket: bytes
    granted_ms: int
    udp_port: int


@dataclass(frozen=True, kw_only=True)
class Info:
    total_retrans: int
    backoff: int
    retransmits: int


@dataclass(frozen=True, kw_only=True)
class Stats:
    udp_received: int
    netns_inode: int
    retrans_segs_delta: int
    syn_retrans_delta: int


def frame(kind: MsgType, body: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(body)) + body


def compute_mac(token: bytes, nonce: bytes) -> bytes:
    return hmac.new(token, MAC_CONTEXT + nonce, hashlib.sha256).digest()


def encode_open() -> bytes:
    return frame(MsgType.OPEN, bytes([VERSION]))


def encode_challenge(c: Challenge) -> bytes:
    flags = FLAG_TOKEN_REQUIRED if c.token_required else 0
    return frame(MsgType.CHALLENGE, _CHALLENGE.pack(c.version, flags, c.nonce, c.max_message_bytes,
                                                   c.max_duration_ms, c.udp_port))


def decode_challenge(body: bytes) -> Challenge:
    if len(body) != _CHALLENGE.size:
        raise ProtocolError(ErrorCode.PROTOCOL, "malformed CHALLENGE")
    v, flags, nonce, max_msg, max_ms, udp = _CHALLENGE.unpack(body)
    return Challenge(version=v, token_required=bool(flags & FLAG_TOKEN_REQUIRED), nonce=nonce,
                     max_message_bytes=max_msg, max_duration_ms=max_ms, udp_port=udp)


def encode_auth(a: Auth) -> bytes:
    return frame(MsgType.AUTH, _AUTH.pack(a.mac, a.pattern, a.duration_ms, a.streams,
                                         a.request_bytes, a.response_bytes))


def decode_auth(body: bytes) -> Auth:
    if len(body) != _AUTH.size:
        raise ProtocolError(ErrorCode.PROTOCOL, "malformed AUTH")
    mac, pattern, ms, streams, req, rsp = _AUTH.unpack(body)
    return Auth(mac=mac, pattern=pattern, duration_ms=ms, streams=streams, request_bytes=req,
                response_bytes=rsp)


def encode_welcome(w: Welcome) -> bytes:
    return frame(MsgType.WELCOME, _WELCOME.pack(w.ticket, w.granted_ms, w.udp_port))


def decode_welcome(body: bytes) -> Welcome:
    if len(body) != _WELCOME.size:
        raise ProtocolError(ErrorCode.PROTOCOL, "malformed WELCOME")
    ticket, ms, udp = _WELCOME.unpack(body)
    return Welcome(ticket=ticket, granted_ms=ms, udp_port=udp)


def encode_error(code: ErrorCode, text: str) -> bytes:
    return frame(MsgType.ERROR, bytes([code]) + text.encode()[:512])


def decode_error(body: bytes) -> tuple[int, str]:
    if not body:
        return ErrorCode.PROTOCOL, "empty ERROR"
    return body[0], body[1:].decode(errors="replace")


def encode_attach(ticket: bytes) -> bytes:
    return frame(MsgType.ATTACH, ticket)


def encode_request(response_bytes: int, payload: bytes) -> bytes:
    return HEADER.pack(MsgType.REQUEST, _REQUEST.size + len(payload)) + _REQUEST.pack(response_bytes) + payload


def encode_info(i: Info) -> bytes:
    return frame(MsgType.INFO, _INFO.pack(i.total_retrans, i.backoff, i.retransmits))


def decode_info(body: bytes) -> Info:
    if len(body) != _INFO.size:
        raise ProtocolError(ErrorCode.PROTOCOL, "malformed INFO")
    total, backoff, retransmits = _INFO.unpack(body)
    return Info(total_retrans=total, backoff=backoff, retransmits=retransmits)


def encode_stats(s: Stats) -> bytes:
    return frame(MsgType.STATS, _STATS.pack(s.udp_received, s.netns_inode, s.retrans_segs_delta,
                                           s.syn_retrans_delta))


def decode_stats(body: bytes) -> Stats:
    if len(body) != _STATS.size:
        raise ProtocolError(ErrorCode.PROTOCOL, "malformed STATS")
    rx, ino, retrans, syn = _STATS.unpack(body)
    return Stats(udp_received=rx, netns_inode=ino, retrans_segs_delta=retrans, syn_retrans_delta=syn)


class FrameDecoder:
    """Splits a byte stream into (type, body) frames. A frame's header is checked as
    soon as it arrives: an unknown type or a body over the limit is an error at
    once, so garbage is never buffered beyond one frame."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> tuple[MsgType, bytes] | None:
        """The next complete frame, or None until more bytes arrive."""
        if len(self._buf) < HEADER.size:
            return None
        kind, length = HEADER.unpack_from(self._buf)
        if kind not in _KINDS:
            raise ProtocolError(ErrorCode.PROTOCOL, f"unknown frame type {kind}")
        if length > self.max_body:
            raise ProtocolError(ErrorCode.TOO_BIG, f"frame of {length} bytes exceeds the limit of {self.max_body}")
        end = HEADER.size + length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER.size:end])
        del self._buf[:end]
        return _KINDS[kind], body

    def frames(self, data: bytes = b"") -> list[tuple[MsgType, bytes]]:
        """Feed ``data`` and return every complete frame."""
        self.feed(data)
        out = []
        while (f := self.next()) is not None:
            out.append(f)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def ready(self) -> bool:
        """``next()`` would make progress now: a whole frame is buffered, or a header
        it refuses. Bytes of a frame still arriving are *not* ready: waiting on
        ``pending`` instead is what made the server spin on a partial large frame."""
        if len(self._buf) < HEADER.size:
            return False
        kind, length = HEADER.unpack_from(self._buf)
        return kind not in _KINDS or length > self.max_body or len(self._buf) >= HEADER.size + length

    @property
    def missing_bytes(self) -> int:
        """Bytes still to come before the frame being received is complete (0 when
        its header has not arrived yet): lets the reader size one read to it."""
        if len(self._buf) < HEADER.size:
            return 0
        _, length = HEADER.unpack_from(self._buf)
        return max(0, HEADER.size + min(length, self.max_body) - len(self._buf))


_KINDS = {int(k): k for k in MsgType}


# ---- sessions ----------------------------------------------------------------

@dataclass(kw_only=True)
class Session:
    session_id: int
    expiry_s: int
    pattern: int
    udp_received: int = 0
    counters_start: dict = field(default_factory=dict)


class Sessions:
    """Live sessions and their tickets. Times are the server's monotonic seconds."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._next = 1
        self.live: dict[int, Session] = {}

    def _sign(self, sid: int, expiry: int) -> bytes:
        return hmac.new(self._secret, struct.pack("!II", sid, expiry), hashlib.sha256).digest()[:8]

    def open(self, *, pattern: int, expiry_s: int) -> tuple[Session, bytes]:
        sid = self._next
        self._next = (self._next + 1) & 0xFFFFFFFF or 1
        session = Session(session_id=sid, expiry_s=expiry_s, pattern=pattern)
        self.live[sid] = session
        return session, TICKET.pack(sid, expiry_s, self._sign(sid, expiry_s))

    def check(self, ticket: bytes, now_s: float) -> Session | None:
        if len(ticket) != TICKET_BYTES:
            return None
        sid, expiry, mac = TICKET.unpack(ticket)
        if not hmac.compare_digest(mac, self._sign(sid, expiry)) or now_s > expiry:
            return None
        return self.live.get(sid)

    def close(self, sid: int) -> None:
        self.live.pop(sid, None)


# ---- the server's per-connection state machine ------------------------------

@dataclass(frozen=True, kw_only=True)
class Limits:
    max_message_bytes: int = 1 << 20
    """Largest request payload and largest response the server will send."""
    max_duration_s: int = 3600
    max_connections: int = 4096
    handshake_timeout_s: float = 10.0
    """Connections without a session after this long are closed."""


class ReadTcpInfo:
    """Command: answer an INFO_REQUEST with this socket's TCP_INFO (see ``info_reply``)."""


class ReadStats:
    """Command: answer a STATS_REQUEST with the session's counters (see ``stats_reply``)."""


class SessionOpened:
    """Command: a session started; the server snapshots its namespace counters."""

    def __init__(self, session: Session) -> None:
        self.session = session


@dataclass
class Close:
    """Command: close the connection (after sending what precedes it)."""

    reason: str


Output = bytes | ReadTcpInfo | ReadStats | SessionOpened | Close
_ZEROS = bytes(1 << 16)
_FAST = struct.Struct("!II")  # frame length, then a REQUEST's response length
_RESPONSES: dict[int, bytes] = {}
_REQUEST_TYPE = int(MsgType.REQUEST)  # a plain int: compared once per request


def _zeros(n: int) -> bytes:
    return _ZEROS[:n] if n <= len(_ZEROS) else bytes(n)


class ServerConnection:
    """One TCP connection as the server sees it. ``receive`` takes bytes and returns
    what to do: bytes to send, commands to carry out, and finally ``Close``."""

    def __init__(self, *, limits: Limits, sessions: Sessions, token: bytes | None, nonce: bytes,
                 udp_port: int, now_s: float) -> None:
        self.limits = limits
        self.sessions = sessions
        self.token = token
        self.nonce = nonce
        self.udp_port = udp_port
        self.opened_s = now_s
        self.state = "new"  # new -> challenged -> control | data -> closed
        self.established = False
        """In a session (control or data): REQUESTs may take the fast path."""
        self._max_message = limits.max_message_bytes
        self.session: Session | None = None
        self.decoder = FrameDecoder(limits.max_message_bytes + _REQUEST.size)

    def receive(self, data: bytes, now_s: float, budget_bytes: int = 1 << 22) -> list[Output]:
        """Take ``data`` and handle the frames it completes until the output passes
        ``budget_bytes``; the rest wait in the buffer until ``receive(b"")`` is
        called again (after the output was sent), so memory stays bounded however
        many requests one read brings."""
        if self.state == "closed":
            return []
        out: list[Output] = []
        produced = 0
        try:
            self.decoder.feed(data)
            while produced < budget_bytes and (f := self.decoder.next()) is not None:
                self._handle(f[0], f[1], now_s, out)
                if out and isinstance(out[-1], bytes):
                    produced += len(out[-1])
                if self.state == "closed":
                    break
        except ProtocolError as exc:
            self.state = "closed"
            self.established = False
            out.append(encode_error(exc.code, exc.text))
            out.append(Close(exc.text))
        return out

    @property
    def has_pending_input(self) -> bool:
        """Bytes are buffered (perhaps only part of a frame)."""
        return self.decoder.pending > 0

    @property
    def has_ready_frame(self) -> bool:
        """``receive(b"")`` would handle a frame now (one held back by the output
        budget, or an invalid header); False while a frame is still arriving."""
        return self.state != "closed" and self.decoder.ready

    def fast_response(self, data: bytes) -> bytes | None:
        """The response when ``data`` is exactly one in-limit REQUEST on an
        established connection (the steady state of every pattern), else None and
        the caller takes the general path with ``receive``. Same bytes either way."""
        if self.established and data[0] == _REQUEST_TYPE and len(data) >= 9 and not self.decoder.pending:
            length, want = _FAST.unpack_from(data, 1)
            if length == len(data) - 5 and want <= self._max_message:
                cached = _RESPONSES.get(want)
                if cached is None:
                    cached = HEADER.pack(MsgType.RESPONSE, want) + _zeros(want)
                    if want <= 4096:
                        _RESPONSES[want] = cached
                return cached
        return None

    def expired(self, now_s: float) -> bool:
        """True when the connection has outlived what it may: no session within the
        handshake timeout, or a session past its granted duration."""
        if self.session is None:
            return now_s - self.opened_s > self.limits.handshake_timeout_s
        return now_s > self.session.expiry_s or self.session.session_id not in self.sessions.live

    def connection_lost(self) -> None:
        if self.state == "control" and self.session is not None:
            self.sessions.close(self.session.session_id)
        self.state = "closed"
        self.established = False

    def _fail(self, code: ErrorCode, text: str) -> None:
        raise ProtocolError(code, text)

    def _handle(self, kind: MsgType, body: bytes, now_s: float, out: list[Output]) -> None:
        state = self.state
        if kind == MsgType.REQUEST and state in ("control", "data"):
            (want,) = _REQUEST.unpack_from(body)
            if want > self.limits.max_message_bytes:
                self._fail(ErrorCode.TOO_BIG, f"response of {want} bytes asked, the limit is "
                                              f"{self.limits.max_message_bytes}")
            out.append(HEADER.pack(MsgType.RESPONSE, want) + _zeros(want))
        elif kind == MsgType.OPEN and state == "new":
            if body[:1] != bytes([VERSION]):
                self._fail(ErrorCode.VERSION, f"protocol version {body[:1].hex()} not supported, "
                                              f"this server speaks {VERSION}")
            self.state = "challenged"
            out.append(encode_challenge(Challenge(
                version=VERSION, token_required=self.token is not None, nonce=self.nonce,
                max_message_bytes=self.limits.max_message_bytes,
                max_duration_ms=self.limits.max_duration_s * 1000, udp_port=self.udp_port)))
        elif kind == MsgType.AUTH and state == "challenged":
            auth = decode_auth(body)
            if self.token is not None and not hmac.compare_digest(auth.mac, compute_mac(self.token, self.nonce)):
                self._fail(ErrorCode.AUTH, "token does not match the server's")
            if auth.pattern not in PATTERN_CODES.values():
                self._fail(ErrorCode.PROTOCOL, f"unknown pattern {auth.pattern}")
            biggest = max(auth.request_bytes, auth.response_bytes)
            if biggest > self.limits.max_message_bytes:
                self._fail(ErrorCode.TOO_BIG, f"messages of {biggest} bytes asked, the limit is "
                                              f"{self.limits.max_message_bytes}")
            if auth.duration_ms > self.limits.max_duration_s * 1000:
                self._fail(ErrorCode.LIMIT, f"duration of {auth.duration_ms / 1000:g} s asked, the limit is "
                                            f"{self.limits.max_duration_s} s")
            expiry = int(now_s + auth.duration_ms / 1000) + 1
            self.session, ticket = self.sessions.open(pattern=auth.pattern, expiry_s=expiry)
            self.state = "control"
            self.established = True
            out.append(SessionOpened(self.session))
            out.append(encode_welcome(Welcome(ticket=ticket, granted_ms=auth.duration_ms,
                                              udp_port=self.udp_port)))
        elif kind == MsgType.ATTACH and state == "new":
            session = self.sessions.check(body, now_s)
            if session is None:
                self._fail(ErrorCode.TICKET, "unknown or expired session ticket")
            self.session = session
            self.state = "data"
            self.established = True
        elif kind == MsgType.INFO_REQUEST and state in ("control", "data"):
            out.append(ReadTcpInfo())
        elif kind == MsgType.STATS_REQUEST and state == "control":
            out.append(ReadStats())
        else:
            self._fail(ErrorCode.PROTOCOL, f"unexpected {kind.name} frame in state {state}")

    @staticmethod
    def info_reply(info: Info) -> bytes:
        return encode_info(info)

    @staticmethod
    def stats_reply(stats: Stats) -> bytes:
        return encode_stats(stats)


def handle_udp(datagram: bytes, sessions: Sessions, limits: Limits, now_s: float) -> bytes | None:
    """The reply to one UDP request, or None to drop it silently (bad ticket,
    malformed, or asking more than the limit)."""
    if len(datagram) < UDP_REQUEST.size:
        return None
    ticket, seq, want = UDP_REQUEST.unpack_from(datagram)
    session = sessions.check(ticket, now_s)
    if session is None or want > min(limits.max_message_bytes, UDP_MAX_PAYLOAD) or want < UDP_RESPONSE.size:
        return None
    if not seq & UDP_WARMUP:
        session.udp_received += 1
    return UDP_RESPONSE.pack(seq) + _zeros(want - UDP_RESPONSE.size)


def encode_udp_request(ticket: bytes, seq: int, request_bytes: int, response_bytes: int) -> bytes:
    """A UDP request of ``max(request_bytes, header)`` bytes asking for
    ``max(response_bytes, 8)`` bytes back."""
    head = UDP_REQUEST.pack(ticket, seq, max(response_bytes, UDP_RESPONSE.size))
    return head + _zeros(max(0, request_bytes - len(head)))
