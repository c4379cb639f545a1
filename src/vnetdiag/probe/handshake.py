"""Probing a peer that runs nothing of ours: the round trips its kernel answers.

``tcp-syn``: connect() to a TCP port and time it: an open port answers the SYN
with a SYN-ACK (connect returns), a closed one with a RST (connection
refused); either way the guest kernel answered, no process ran. The socket is
then closed with a RST (SO_LINGER 0), so the peer keeps no state and nothing
is retransmitted. A lost SYN or SYN-ACK shows as a round trip past the
kernel's SYN schedule (1 s, 3 s, 7 s ...), counted in ``syn_retransmits``.

``icmp-echo``: echo requests on a raw ICMP socket (root), matched to replies
by identifier and sequence number.

Attempts are sequential, one every ``interval_s`` (closed loop when 0), in
the namespace given (``netns.entered``: the socket stays in it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from pathlib import Path

from vnetdiag.analyze.tails import syn_schedule_ms
from vnetdiag.errors import UsageError
from vnetdiag.model.handshake import HANDSHAKE_PATTERNS, HandshakeResult
from vnetdiag.probe import histograms as H
from vnetdiag.probe import tcpstats
from vnetdiag.probe.streams import LINGER_RST
from vnetdiag.system import netns as netns_mod

_SLOWEST = 20


def run(target: str, *, pattern: str = "tcp-syn", port: int | None = 7, count: int = 100,
        interval_s: float = 0.01, timeout_s: float = 3.0, netns: str | Path | None = None,
        syn_linear_timeouts: int | None = None) -> HandshakeResult:
    """``count`` round trips to ``target`` (an IPv4 or IPv6 address).

    ``syn_linear_timeouts``: the SYN schedule to read round trips against (None:
    net.ipv4.tcp_syn_linear_timeouts of the namespace the probe runs in)."""
    if pattern not in HANDSHAKE_PATTERNS:
        raise UsageError(f"unknown server-less pattern {pattern!r}", hint=f"use one of {', '.join(HANDSHAKE_PATTERNS)}")
    if count < 1 or interval_s < 0 or timeout_s <= 0:
        raise UsageError("count must be at least 1, interval_s not negative, timeout_s positive")
    if pattern == "tcp-syn" and not (port and 0 < port < 65536):
        raise UsageError(f"tcp-syn needs a TCP port, got {port!r}")
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    hist = H.new_histogram()
    answers: dict[str, int] = {}
    rtts_ms: list[float] = []
    timeouts = errors = 0
    ctx = netns_mod.entered(netns) if netns is not None else contextlib.nullcontext()
    t0 = time.monotonic()
    with ctx:
        if syn_linear_timeouts is None:
            syn_linear_timeouts = tcpstats.syn_linear_timeouts()
        attempt = _tcp_attempt if pattern == "tcp-syn" else _IcmpEcho(family, target).attempt
        for i in range(count):
            due = t0 + i * interval_s
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            kind, rtt_ns = attempt(family, target, port, timeout_s)
            if kind == "timeout":
                timeouts += 1
            elif kind == "error":
                errors += 1
            else:
                answers[kind] = answers.get(kind, 0) + 1
                hist.record_value(max(1, rtt_ns))
                rtts_ms.append(rtt_ns / 1e6)
    duration_s = time.monotonic() - t0
    retrans: dict[str, int] = {}
    if pattern == "tcp-syn":
        for ms in rtts_ms:
            k = str(syn_retransmits(ms, syn_linear_timeouts))
            retrans[k] = retrans.get(k, 0) + 1
    return HandshakeResult(target=target, port=port if pattern == "tcp-syn" else None, pattern=pattern,  # type: ignore[arg-type]
                           netns=str(netns) if netns is not None else None, attempts=count, answers=answers,
                           timeouts=timeouts, errors=errors, timeout_s=timeout_s, interval_s=interval_s,
                           duration_s=duration_s, latency=H.summarize(hist), histogram=H.log_bins(hist),
                           syn_retransmits=retrans, slowest_ms=tuple(sorted(rtts_ms, reverse=True)[:_SLOWEST]))


def syn_retransmits(rtt_ms: float, linear_timeouts: int) -> int:
    """SYN retransmissions a round trip implies: how many of the kernel's SYN
    timeouts it outlasted (1 s each for the first ``linear_timeouts`` + 1, then
    doubling: net.ipv4.tcp_syn_linear_timeouts, 4 by default since Linux 6.5,
    so a 2 s round trip is two retransmissions, not one)."""
    k = 0
    while rtt_ms >= syn_schedule_ms(k + 1, linear_timeouts=linear_timeouts):
        k += 1
    return k


def _tcp_attempt(family: int, target: str, port: int, timeout_s: float) -> tuple[str, int]:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        start = time.perf_counter_ns()
        rc = s.connect_ex((target, port))
        if rc not in (errno.EINPROGRESS, 0):
            return ("rst", time.perf_counter_ns() - start) if rc == errno.ECONNREFUSED else ("error", 0)
        if rc == errno.EINPROGRESS:
            _, writable, _ = select.select([], [s], [], timeout_s)
            if not writable:
                return ("timeout", 0)
        elapsed = time.perf_counter_ns() - start
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            return ("syn-ack", elapsed)
        if err == errno.ECONNREFUSED:
            return ("rst", elapsed)
        if err == errno.ETIMEDOUT:
            return ("timeout", 0)
        return ("error", 0)
    finally:
        s.close()  # SO_LINGER 0: a RST, no FIN handshake, no TIME_WAIT


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _IcmpEcho:
    """Echo request/reply on one raw socket; IPv4 replies carry the IP header."""

    def __init__(self, family: int, target: str) -> None:
        self.v6 = family == socket.AF_INET6
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.target = target
        self.sock = None

    def attempt(self, family: int, target: str, _port, timeout_s: float) -> tuple[str, int]:
        if self.sock is None:
            proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
            self.sock = socket.socket(family, socket.SOCK_RAW, proto)
        self.seq = (self.seq + 1) & 0xFFFF
        req_type, rep_type = (128, 129) if self.v6 else (8, 0)
        payload = b"vnetdiag-handshake".ljust(32, b".")
        header = struct.pack("!BBHHH", req_type, 0, 0, self.ident, self.seq)
        # The kernel fills the ICMPv6 checksum (it needs the pseudo-header).
        csum = 0 if self.v6 else _checksum(header + payload)
        packet = struct.pack("!BBHHH", req_type, 0, csum, self.ident, self.seq) + payload
        start = time.perf_counter_ns()
        self.sock.sendto(packet, (target, 0))
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout", 0)
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return ("timeout", 0)
            data, addr = self.sock.recvfrom(2048)
            elapsed = time.perf_counter_ns() - start
            off = 0 if self.v6 else (data[0] & 0x0F) * 4
            if len(data) < off + 8 or addr[0] != target:
                continue
            typ, _code, _c, ident, seq = struct.unpack_from("!BBHHH", data, off)
            if typ == rep_type and ident == self.ident and seq == self.seq:
                return ("echo-reply", elapsed)

    def __del__(self) -> None:
        if self.sock is not None:
            self.sock.close()
