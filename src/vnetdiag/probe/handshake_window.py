"""Server-less round trips over a time window, several streams at once: the
handshake probe (``probe/handshake.py``) as diagnose runs it towards a peer
that runs nothing of ours (a VM's bare guest).

Each stream is a thread that makes one attempt after another, one every
``interval_s``, until the window ends or ``stop`` is set; an attempt started
inside the window is always waited out (up to ``timeout_s``), so a SYN that
is retransmitted is counted as such and not cut short. The streams' attempts
are merged into one ``HandshakeResult`` (one histogram: summarising one per
attempt costs ~0.2 s each), and each attempt that needed a
retransmission or went unanswered is kept as a slow interval (for the
verdicts' timing evidence).

ICMP echo runs one stream: the replies are matched by identifier and sequence
number, which concurrent raw sockets of one process would share.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import UsageError
from vnetdiag.model.handshake import HANDSHAKE_PATTERNS, HandshakeResult
from vnetdiag.probe import handshake
from vnetdiag.probe import histograms as H
from vnetdiag.probe import tcpstats
from vnetdiag.system import netns as netns_mod

_SLOWEST = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeWindow:
    result: HandshakeResult
    slow_ns: tuple[tuple[int, int], ...]
    """(start, end) CLOCK_MONOTONIC ns of attempts that were retransmitted or unanswered."""
    started_ns: int
    """CLOCK_MONOTONIC start of the window."""
    rtts_us: tuple[float, ...] = ()
    """Every answered attempt's round trip, in the order the attempts ended."""


def run_window(target: str, *, pattern: str = "tcp-syn", port: int | None = 9, streams: int = 4,
               duration_s: float = 5.0, interval_s: float = 0.02, timeout_s: float = 3.0,
               netns: str | Path | None = None, stop: threading.Event | None = None) -> HandshakeWindow:
    """Attempts to ``target`` from ``streams`` threads for ``duration_s``."""
    if pattern not in HANDSHAKE_PATTERNS:
        raise UsageError(f"unknown server-less pattern {pattern!r}", hint=f"use one of {', '.join(HANDSHAKE_PATTERNS)}")
    streams = 1 if pattern == "icmp-echo" else max(1, streams)
    stop = stop or threading.Event()
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    lock = threading.Lock()
    done: list[tuple[str, int, int, int]] = []  # (kind, round trip ns, start ns, end ns)
    failures: list[BaseException] = []
    with netns_mod.entered(netns) if netns is not None else contextlib.nullcontext():
        linear = tcpstats.syn_linear_timeouts()  # the SYN schedule of the namespace the SYNs leave from
    started_ns = time.monotonic_ns()
    end_ns = started_ns + int(duration_s * 1e9)

    def stream(k: int) -> None:
        # Streams start spread over one interval, so their SYNs do not leave in bursts.
        due_ns = started_ns + int(interval_s * 1e9 * k / streams)
        try:
            with netns_mod.entered(netns) if netns is not None else contextlib.nullcontext():
                attempt = (handshake._tcp_attempt if pattern == "tcp-syn"
                           else handshake._IcmpEcho(family, target).attempt)
                while not stop.is_set() and (now := time.monotonic_ns()) < end_ns:
                    if due_ns > now and stop.wait((due_ns - now) / 1e9):
                        break
                    t0 = time.monotonic_ns()
                    kind, rtt_ns = attempt(family, target, port, timeout_s)
                    with lock:
                        done.append((kind, rtt_ns, t0, time.monotonic_ns()))
                    due_ns = t0 + int(interval_s * 1e9)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=stream, args=(k,), daemon=True, name=f"handshake-{k}")
               for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    hist = H.new_histogram()
    answers: dict[str, int] = {}
    retrans: dict[str, int] = {}
    slow: list[tuple[int, int]] = []
    for kind, rtt_ns, t0, t1 in done:
        if kind in ("timeout", "error"):
            slow += [(t0, t1)] if kind == "timeout" else []
            continue
        answers[kind] = answers.get(kind, 0) + 1
        hist.record_value(max(1, rtt_ns))
        if pattern == "tcp-syn":
            n = str(handshake.syn_retransmits(rtt_ns / 1e6, linear))
            retrans[n] = retrans.get(n, 0) + 1
            slow += [(t0, t1)] if n != "0" else []
    rtts_ms = sorted((d[1] / 1e6 for d in done if d[0] not in ("timeout", "error")), reverse=True)
    result = HandshakeResult(target=target, port=port if pattern == "tcp-syn" else None, pattern=pattern,  # type: ignore[arg-type]
                             netns=str(netns) if netns is not None else None, attempts=len(done), answers=answers,
                             timeouts=sum(d[0] == "timeout" for d in done), errors=sum(d[0] == "error" for d in done),
                             timeout_s=timeout_s, interval_s=interval_s,
                             duration_s=(time.monotonic_ns() - started_ns) / 1e9, latency=H.summarize(hist),
                             histogram=H.log_bins(hist), syn_retransmits=retrans, slowest_ms=tuple(rtts_ms[:_SLOWEST]))
    return HandshakeWindow(result=result, slow_ns=tuple(sorted(slow)), started_ns=started_ns,
                           rtts_us=tuple(d[1] / 1e3 for d in done if d[0] not in ("timeout", "error")))
