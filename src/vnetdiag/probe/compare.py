"""Interleaved probe runs: several paths measured in round-robin short slices.

A slow minute of the machine (another tenant, a timer storm, a CPU that
clocks down) would favour whichever path happened to run in another minute.
Cutting each path's run into short slices and taking the paths in turn,
round after round, puts that noise on all of them alike; the order changes
each round (``design``) so no path always runs first, or always right after
the same other path. Each path has its own probe server, started once in its TO
namespace on a port the kernel picks; every slice is one ``run_probe``
session with its own short warm-up, and its transactions are read back
exactly from the probe's raw log. With a server-less pattern (tcp-syn,
icmp-echo: a path to a VM's guest, where our server cannot run) no server is
started and a slice is one window of handshakes its far end's kernel answers.

Sources only: no topology, no statistics (``vnetdiag.compare`` puts it together).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from vnetdiag.errors import UsageError, VnetdiagError
from vnetdiag.model import signatures as sig
from vnetdiag.model.compare import Slice
from vnetdiag.model.probe import ProbeResult

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Leg:
    """One path to probe: where the client runs and where its server listens."""

    label: str
    client_netns: str
    """A path that opens the client's namespace."""
    server_netns: str
    server_address: str
    port: int | None = None
    """tcp-syn: the port the far end's kernel answers on (closed: a RST)."""


def design(paths: int) -> list[list[int]]:
    """The orders of the rounds, a Williams design: every path runs in every
    place, and right after every other path, equally often (n rows for an even
    number of paths, 2n for an odd one). A slice can leave something behind
    for the next (a lossy path's connections still retransmitting, a server
    thread still busy): with plain rotation the same path would always pay
    for it, and a path measured twice would differ from itself."""
    first, low, high = [0], 1, paths - 1
    while len(first) < paths:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if len(first) < paths:
            first.append(high)
            high -= 1
    rows = [[(v + k) % paths for v in first] for k in range(paths)]
    return rows if paths % 2 == 0 else rows + [row[::-1] for row in rows]


def order_of(round_: int, paths: int) -> list[int]:
    """The paths' order in a round (``design``, round after round)."""
    rows = design(paths)
    return rows[round_ % len(rows)]


def balanced_rounds(rounds: int, paths: int) -> int:
    """``rounds`` rounded up to whole designs, so the balance holds."""
    n = len(design(paths))
    return -(-rounds // n) * n


def _latencies(raw: str) -> np.ndarray:
    """Latencies (us) from the probe's raw CSV: stream, completed_s, latency_us."""
    lines = raw.splitlines()[1:]
    if not lines:
        return np.zeros(0)
    return np.loadtxt(lines, delimiter=",", usecols=2, ndmin=1, dtype=float)


def slice_of(result: ProbeResult, raw: str, *, path: int, round_: int, position: int, started_s: float) -> Slice:
    """One slice's record from the probe's result and its raw log."""
    if result.udp is not None:
        trials, lost = result.udp.sent, result.udp.lost
    else:
        trials = result.transactions
        lost = sum(t.count for t in result.tails if t.expected_retransmits >= 1)
    retrans = 0
    if result.tcp is not None:
        retrans = result.tcp.retrans_segs_delta + max(result.tcp.server_retrans_segs_delta or 0, 0)
    tails: dict[str, int] = {}
    for t in result.tails:
        if t.count:
            tails[t.signature] = tails.get(t.signature, 0) + t.count
    return Slice(path=path, round=round_, position=position, started_s=started_s, duration_s=result.duration_s,
                 transactions=result.transactions, trials=trials, lost=lost, errors=result.errors,
                 retrans_segs=retrans, tails=tails, latency_us=_latencies(raw), shortfall=result.shortfall)


def handshake_slice(window, *, path: int, round_: int, position: int, started_s: float) -> Slice:
    """One slice of server-less round trips: an attempt is a transaction; it was
    lost when it went unanswered or its round trip outlasted a SYN timeout
    (each such timeout is one SYN or SYN-ACK the network lost)."""
    r = window.result
    retried = {k: n for k, n in r.syn_retransmits.items() if k != "0"}
    tails = {sig.syn_retrans(int(k)): n for k, n in retried.items()}
    return Slice(path=path, round=round_, position=position, started_s=started_s, duration_s=r.duration_s,
                 transactions=r.answered, trials=r.attempts, lost=r.timeouts + sum(retried.values()),
                 errors=r.errors, retrans_segs=sum(int(k) * n for k, n in retried.items()), tails=tails,
                 latency_us=np.asarray(window.rtts_us, dtype=float),
                 shortfall=None if r.answered else f"none of {r.attempts} attempts was answered")


def failed_slice(why: str, *, path: int, round_: int, position: int, started_s: float) -> Slice:
    """A slice whose probe could not run (no session, no stream connected)."""
    return Slice(path=path, round=round_, position=position, started_s=started_s, duration_s=0.0, transactions=0,
                 trials=0, lost=0, errors=1, retrans_segs=0, tails={}, latency_us=np.zeros(0),
                 shortfall=f"the probe could not run: {why}")


def run_interleaved(legs: Sequence[Leg], *, rounds: int, slice_s: float, warmup_s: float = 0.1,
                    pattern: str = "tcp-rr", streams: int = 4, request_bytes: int = 1, response_bytes: int = 1,
                    connect_timeout_s: float = 10.0, progress: Progress | None = None,
                    stop: threading.Event | None = None) -> tuple[tuple[Slice, ...], bool]:
    """Probe every leg ``rounds`` times for ``slice_s`` measured seconds each,
    interleaved. Returns the slices of the complete rounds, and whether the run
    was interrupted (``stop`` set, or Ctrl-C) before the last round ended."""
    from vnetdiag.model.handshake import HANDSHAKE_PATTERNS
    from vnetdiag.probe.client import run_probe
    from vnetdiag.probe.handshake_window import run_window
    from vnetdiag.probe.server import Server

    if len(legs) < 2:
        raise UsageError("compare needs at least two paths", hint="give --path twice or more")
    if rounds < 1 or not slice_s > 0:
        raise UsageError("compare needs at least one round of slices longer than 0 s")
    say = progress or (lambda _m: None)
    stop = stop or threading.Event()
    slices: list[Slice] = []
    interrupted = False
    with ExitStack() as stack:
        serverless = pattern in HANDSHAKE_PATTERNS
        ports = [leg.port for leg in legs]
        for i, leg in enumerate(legs if not serverless else ()):
            server = Server(bind=leg.server_address, port=0, netns=leg.server_netns)
            ports[i] = server.start()[1]
            stack.callback(server.stop)
            server.serve_in_thread()
        t0 = time.monotonic()
        try:
            for r in range(rounds):
                done: list[Slice] = []
                for position, i in enumerate(order_of(r, len(legs))):
                    leg, raw = legs[i], io.StringIO()
                    started = time.monotonic() - t0
                    if serverless:  # each attempt stands alone: no session, no warm-up
                        window = run_window(leg.server_address, pattern=pattern, port=ports[i], streams=streams,
                                            duration_s=slice_s, netns=leg.client_netns, stop=stop)
                        if stop.is_set():
                            raise KeyboardInterrupt
                        done.append(handshake_slice(window, path=i, round_=r, position=position, started_s=started))
                        continue
                    try:
                        result = run_probe(leg.server_address, port=ports[i], pattern=pattern, streams=streams,
                                           duration_s=slice_s, warmup_s=warmup_s, request_bytes=request_bytes,
                                           response_bytes=response_bytes, netns=leg.client_netns, raw=raw,
                                           connect_timeout_s=connect_timeout_s, stop=stop)
                    except VnetdiagError as exc:
                        # A path too lossy to set a session up is a finding, not the end of the
                        # run: the slice is kept, empty, with the reason.
                        done.append(failed_slice(exc.message, path=i, round_=r, position=position,
                                                 started_s=started))
                        continue
                    if result.interrupted:
                        raise KeyboardInterrupt
                    done.append(slice_of(result, raw.getvalue(), path=i, round_=r, position=position,
                                         started_s=started))
                slices.extend(done)  # a round counts only whole: the paths stay paired
                say(f"round {r + 1}/{rounds}: " + ", ".join(
                    f"{legs[s.path].label} {s.transactions:,} tx" for s in sorted(done, key=lambda s: s.path)))
        except KeyboardInterrupt:
            interrupted = True
    return tuple(slices), interrupted
