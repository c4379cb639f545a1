"""The probe server: one thread, one epoll loop, TCP and UDP on the same port.

The protocol decisions live in ``protocol.ServerConnection``; this module only
moves bytes, enforces the connection limit, reads TCP_INFO and counters when
asked, and closes what the state machine or the clock says to close. A
connection with output pending is not read from until the output is sent, so
a client that never reads cannot make the server buffer without bound.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import BadInputError, KernelError
from vnetdiag.probe import protocol as p
from vnetdiag.probe import tcpstats
from vnetdiag.probe.streams import close_with_rst
from vnetdiag.system import netns

DEFAULT_PORT = 7735
_SWEEP_S = 0.5
_READ_BYTES = 16384
"""One read's size in the steady state: small requests, and a small allocation each."""
_MAX_READ_BYTES = 1 << 20
"""The most one read takes while a large frame is arriving."""


@dataclass
class _Conn:
    sock: socket.socket
    machine: p.ServerConnection
    out: bytearray
    closing: bool = False
    writing: bool = False


@dataclass(frozen=True, kw_only=True)
class ServerStats:
    connections: int
    """Connections open now."""
    accepted: int
    rejected: int
    """Connections refused because the limit was reached."""
    protocol_errors: int
    sessions: int
    udp_replies: int
    udp_dropped: int
    buffered_bytes: int
    """Output bytes waiting to be sent, over all connections."""


class Server:
    """A probe server. ``start()`` binds (raising a one-line error if it cannot);
    ``serve_forever()`` runs the loop in the calling thread; ``serve_in_thread()``
    in a daemon thread; ``stop()`` ends it and closes every socket.

    ``netns`` names the namespace to listen in (a name, an inode or a path); only
    the sockets are opened there, the thread returns to where it was.
    """

    def __init__(self, *, bind: str = "127.0.0.1", port: int = DEFAULT_PORT, netns: str | None = None,
                 token: str | bytes | None = None, limits: p.Limits | None = None) -> None:
        self.bind = bind
        self.port = port
        self.netns = netns
        self.token = token.encode() if isinstance(token, str) else token
        self.limits = limits or p.Limits()
        self.sessions = p.Sessions(os.urandom(32))
        self._ep: select.epoll | None = None
        self._handlers: dict[int, object] = {}  # fd -> "listen" | "udp" | "wake" | _Conn
        self._listener: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._netns_path: Path | None = None
        self._mib_start: dict[int, tcpstats.MibSnapshot] = {}
        self.accepted = self.rejected = self.protocol_errors = 0
        self.udp_replies = self.udp_dropped = 0

    # ---- lifecycle ----------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind and listen; returns the (address, port) actually bound."""
        if self.netns:
            self._netns_path = netns.resolve(self.netns)
            with netns.entered(self._netns_path):
                self._open_sockets()
        else:
            self._open_sockets()
        self._bound = self.address  # kept for the document after stop() closes the socket
        return self._bound

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None, "start() first"
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _open_sockets(self) -> None:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        for attempt in range(20):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.bind, self.port))
                port = tcp.getsockname()[1]
                udp.bind((self.bind, port))
                tcp.listen(1024)
                break
            except OSError as exc:
                tcp.close()
                udp.close()
                if exc.errno == errno.EADDRINUSE and self.port == 0 and attempt < 19:
                    continue  # the UDP twin of a random TCP port was taken: pick another
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise BadInputError(f"cannot listen on {self.bind}: no such local address here",
                                        hint="give --listen an address of this namespace "
                                             "(ip -br addr), or --netns to listen elsewhere") from None
                if exc.errno == errno.EADDRINUSE:
                    raise BadInputError(f"cannot listen on {self.bind} port {self.port}: already in use",
                                        hint="pick another port: --listen ADDR:PORT") from None
                raise KernelError(f"cannot listen on {self.bind} port {self.port}", errno=exc.errno) from None
            except socket.gaierror:
                tcp.close()
                udp.close()
                raise BadInputError(f"cannot listen on {self.bind!r}: not an IP address",
                                    hint="give --listen an IPv4 or [IPv6] address and a port") from None
        tcp.setblocking(False)
        udp.setblocking(False)
        self._listener, self._udp = tcp, udp
        self._ep = select.epoll()
        for fd, what in ((tcp.fileno(), "listen"), (udp.fileno(), "udp"), (self._wake_r, "wake")):
            self._ep.register(fd, select.EPOLLIN)
            self._handlers[fd] = what

    def serve_in_thread(self) -> threading.Thread:
        if self._listener is None:
            self.start()
        self._thread = threading.Thread(target=self.serve_forever, name="vnetdiag-serve", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._stop.set()
        if not self._closed:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        self.serve_in_thread()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def document(self, netns_label: str | None = None) -> dict:
        """The ``vnetdiag.serve/1`` document: where it listened and what it served."""
        from dataclasses import asdict

        host, port = self._bound
        return {"schema": "vnetdiag.serve/1", "bind": host, "port": port, "netns": netns_label,
                **asdict(self.stats())}

    def stats(self) -> ServerStats:
        return ServerStats(connections=len(self._conns), accepted=self.accepted, rejected=self.rejected,
                           protocol_errors=self.protocol_errors, sessions=len(self.sessions.live),
                           udp_replies=self.udp_replies, udp_dropped=self.udp_dropped,
                           buffered_bytes=sum(len(c.out) for c in list(self._conns.values())))

    # ---- the loop -----------------------------------------------------------

    def serve_forever(self) -> None:
        if self._listener is None:
            self.start()
        ep, handlers, conns = self._ep, self._handlers, self._conns
        assert ep is not None
        epollout, readable = select.EPOLLOUT, select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
        next_sweep = time.monotonic() + _SWEEP_S
        try:
            while not self._stop.is_set():
                for fd, events in ep.poll(_SWEEP_S):
                    what = handlers.get(fd)
                    if what is None:
                        continue
                    if what.__class__ is _Conn:
                        if events & epollout:
                            self._flush(what)
                        if events & readable and fd in conns:
                            self._readable(what)
                    elif what == "listen":
                        self._accept()
                    elif what == "udp":
                        self._udp_ready()
                    else:
                        os.read(self._wake_r, 64)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_S
        finally:
            self._close_all()

    def _accept(self) -> None:
        assert self._listener is not None and self._ep is not None
        for _ in range(64):
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.rejected += 1  # out of descriptors: leave the rest in the backlog
                    return
                continue  # ECONNABORTED and friends: that client is gone
            if len(self._conns) >= self.limits.max_connections:
                self.rejected += 1
                try:
                    sock.send(p.encode_error(p.ErrorCode.LIMIT, f"server connection limit "
                                                              f"({self.limits.max_connections}) reached"))
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            machine = p.ServerConnection(limits=self.limits, sessions=self.sessions, token=self.token,
                                         nonce=os.urandom(p.NONCE_BYTES), udp_port=self.address[1],
                                         now_s=time.monotonic())
            conn = _Conn(sock=sock, machine=machine, out=bytearray())
            self._conns[sock.fileno()] = conn
            self._handlers[sock.fileno()] = conn
            self._ep.register(sock.fileno(), select.EPOLLIN)
            self.accepted += 1

    def _readable(self, conn: _Conn) -> None:
        size = _READ_BYTES
        missing = conn.machine.decoder.missing_bytes
        if missing > size:  # a large frame is arriving: take it in few reads, not 64 KiB ones
            size = min(missing, _MAX_READ_BYTES)
        try:
            data = conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        if not conn.out:
            response = conn.machine.fast_response(data)
            if response is not None:
                try:
                    sent = conn.sock.send(response)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._drop(conn)
                    return
                if sent < len(response):
                    conn.out += response[sent:]
                    self._want_write(conn)
                return
        self._process(conn, data)

    def _process(self, conn: _Conn, data: bytes) -> None:
        """Run the state machine on ``data`` and on whatever frames it still holds,
        sending as it goes, until output waits for the peer (then EPOLLOUT resumes
        in ``_flush``), the connection closes, or no whole frame is left. A loop,
        not mutual recursion with ``_flush``: a request of many reads or a burst of
        thousands of pipelined ones costs no stack."""
        budget = max(2 * self.limits.max_message_bytes, 1 << 16)
        machine = conn.machine
        while True:
            for item in machine.receive(data, time.monotonic(), budget):
                if isinstance(item, bytes):
                    conn.out += item
                elif isinstance(item, p.ReadTcpInfo):
                    info = tcpstats.tcp_info(conn.sock) or tcpstats.TcpInfo(total_retrans=0, backoff=0,
                                                                            retransmits=0)
                    conn.out += p.ServerConnection.info_reply(p.Info(
                        total_retrans=info.total_retrans, backoff=info.backoff, retransmits=info.retransmits))
                elif isinstance(item, p.ReadStats):
                    conn.out += p.ServerConnection.stats_reply(self._session_stats(machine.session))
                elif isinstance(item, p.SessionOpened):
                    self._mib_start[item.session.session_id] = self._read_mib()
                elif isinstance(item, p.Close):
                    self.protocol_errors += 1
                    conn.closing = True
            data = b""
            if not self._send(conn):
                return
            if conn.out:
                self._want_write(conn)
                return
            if conn.closing:
                self._drop(conn)
                return
            if not machine.has_ready_frame:
                self._want_read(conn)
                return

    def _flush(self, conn: _Conn) -> None:
        """The socket can take more: send, and once everything went, read again and
        handle the frames that were held back while the output was waiting."""
        if not self._send(conn) or conn.out:
            return
        if conn.closing:
            self._drop(conn)
            return
        self._want_read(conn)
        if conn.machine.has_ready_frame:
            self._process(conn, b"")

    def _send(self, conn: _Conn) -> bool:
        """Send what the socket takes of ``conn.out`` now (a partial write keeps the
        rest); False when the connection failed and was dropped."""
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._drop(conn)
                return False
            del conn.out[:sent]  # bytearray drops its head without copying the rest
        return True

    def _want_write(self, conn: _Conn) -> None:
        # Stop reading until the peer takes what it asked for: bounded buffering.
        if not conn.writing:
            assert self._ep is not None
            self._ep.modify(conn.sock.fileno(), select.EPOLLOUT)
            conn.writing = True

    def _want_read(self, conn: _Conn) -> None:
        if conn.writing:
            assert self._ep is not None
            self._ep.modify(conn.sock.fileno(), select.EPOLLIN)
            conn.writing = False

    def _drop(self, conn: _Conn, *, abort: bool = False) -> None:
        fd = conn.sock.fileno()
        if self._conns.pop(fd, None) is None:
            return
        session = conn.machine.session
        conn.machine.connection_lost()
        if session is not None and session.session_id not in self.sessions.live:
            self._mib_start.pop(session.session_id, None)
        self._handlers.pop(fd, None)
        try:
            assert self._ep is not None
            self._ep.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        if abort:
            close_with_rst(conn.sock)
        else:
            conn.sock.close()

    def _sweep(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if conn.machine.expired(now):
                self._drop(conn)

    def _close_all(self) -> None:
        self._closed = True
        for conn in list(self._conns.values()):
            # A RST: a stopped server leaves nothing to retransmit or to answer
            # after diagnose's window (its FIN could be dropped, resent, counted).
            self._drop(conn, abort=True)
        for sock in (self._listener, self._udp):
            if sock is not None:
                sock.close()
        if self._ep is not None:
            self._ep.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _udp_ready(self) -> None:
        assert self._udp is not None
        now = time.monotonic()
        for _ in range(256):
            try:
                data, addr = self._udp.recvfrom(p.UDP_MAX_PAYLOAD + 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error queued by an earlier reply: not ours to report
            reply = p.handle_udp(data, self.sessions, self.limits, now)
            if reply is None:
                self.udp_dropped += 1
                continue
            try:
                self._udp.sendto(reply, addr)
                self.udp_replies += 1
            except OSError:
                self.udp_dropped += 1

    # ---- counters -------------------------------------------------------------

    def _read_mib(self) -> tcpstats.MibSnapshot | None:
        try:
            if self._netns_path is not None:
                with netns.entered(self._netns_path):
                    return tcpstats.read_mib()
            return tcpstats.read_mib()
        except OSError:
            return None

    def _session_stats(self, session: p.Session | None) -> p.Stats:
        if session is None:
            return p.Stats(udp_received=0, netns_inode=0, retrans_segs_delta=-1, syn_retrans_delta=-1)
        start = self._mib_start.get(session.session_id)
        now = self._read_mib()
        ino = netns.inode_of(self._netns_path) if self._netns_path else netns.current_inode()
        if start is None or now is None:
            return p.Stats(udp_received=session.udp_received, netns_inode=ino, retrans_segs_delta=-1,
                           syn_retrans_delta=-1)
        return p.Stats(udp_received=session.udp_received, netns_inode=ino,
                       retrans_segs_delta=now.retrans_segs - start.retrans_segs,
                       syn_retrans_delta=now.syn_retrans - start.syn_retrans)
