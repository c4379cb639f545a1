"""Sessions to several agents: hello, clock offsets, calls (in parallel), teardown.

    with Fleet([host1, host2]) as fleet:
        snaps = fleet.call_all("snapshot")           # {host name: HostSnapshot}
        fleet.offsets["hv2"].offset_ns                # hv2's CLOCK_MONOTONIC - ours

Clock offsets are NTP's: for each of a few ``clock`` exchanges, t0 and t3 are
read here around it and T there; the offset is ``T - (t0 + t3) / 2``, taken from
the exchange with the shortest round trip (its error is at most half of it).
Leaving the block says bye to every agent (each stops what it started) and
kills any that lingers; when an agent died, one more agent is started on that
host for a moment, which undoes the dead one's journals before its hello.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from vnetdiag.errors import VnetdiagError
from vnetdiag.fleet import protocol as proto
from vnetdiag.fleet.transport import AgentDied, AgentProcess, transport_for
from vnetdiag.model.fleet import ClockOffset, ClockReading, Host
from vnetdiag.model.plain import from_plain

HELLO_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 60.0
CLOCK_SAMPLES = 5


class Session:
    """One agent: its hello, and request/answer one at a time."""

    def __init__(self, host: Host, transport=None) -> None:
        self.host = host
        self.transport = transport or transport_for(host)
        self.started_ns = time.monotonic_ns()
        self.proc = AgentProcess(self.transport)
        self.conv = proto.Conversation()
        self.lock = threading.Lock()
        self.dead: VnetdiagError | None = None
        try:
            line = self.proc.readline(HELLO_TIMEOUT_S)
        except TimeoutError:
            self.proc.close(timeout_s=1)
            raise AgentDied(f"the agent on {host.name} did not say hello within {HELLO_TIMEOUT_S:g} s") from None
        except VnetdiagError:
            self.proc.close(timeout_s=1)
            raise
        try:
            self.hello = proto.check_hello(proto.decode(line), where=host.name)
        except VnetdiagError:
            self.proc.close(timeout_s=1)
            raise
        self.proc.said_hello = True
        self.hello_s = (time.monotonic_ns() - self.started_ns) / 1e9
        """Seconds from starting the transport to the agent's hello (ssh login + agent start)."""
        self.round_trips = 0

    def call(self, op: str, *, timeout_s: float = CALL_TIMEOUT_S, **args):
        """The plain value the agent answered; its error raised as a one-line VnetdiagError."""
        with self.lock:
            if self.dead is not None:
                raise self.dead
            _req, line = self.conv.request(op, **args)
            try:
                self.proc.send(line)
                while True:
                    try:
                        msg = self.conv.answer(proto.decode(self.proc.readline(timeout_s)))
                    except TimeoutError:
                        raise AgentDied(f"the agent on {self.host.name} did not answer {op} within {timeout_s:g} s",
                                        hint="the host may be overloaded or the network between us lossy") from None
                    if msg.id is not None:
                        break
                    # An error about no request in particular (a line it could not read): keep waiting.
            except AgentDied as exc:
                self.dead = exc
                raise
            except VnetdiagError as exc:
                if isinstance(exc, proto.ProtocolError):
                    self.dead = exc
                raise
            self.round_trips += 1
        if isinstance(msg, proto.Error):
            proto.raise_error(msg, where=self.host.name)
        return msg.value

    def clock_offset(self, samples: int = CLOCK_SAMPLES) -> ClockOffset:
        best = None
        for _ in range(samples):
            t0 = time.monotonic_ns()
            w0 = time.time_ns()
            r = from_plain(ClockReading, self.call("clock"))
            t3 = time.monotonic_ns()
            w3 = time.time_ns()
            rtt = t3 - t0
            if best is None or rtt < best[0]:
                best = (rtt, r.mono_ns - (t0 + t3) // 2, r.wall_ns - (w0 + w3) // 2)
        rtt, off, woff = best
        return ClockOffset(host=self.host.name, offset_ns=off, wall_offset_ns=woff, rtt_ns=rtt, samples=samples)

    def close(self) -> None:
        """Bye (the agent stops what it started), then wait for it to leave."""
        if self.dead is None:
            try:
                self.call("bye", timeout_s=10)
            except VnetdiagError:
                pass
        self.proc.close()


class Fleet:
    """Sessions to ``hosts`` (opened in parallel); ``notes`` collects what went wrong."""

    def __init__(self, hosts: Iterable[Host], *, transports: dict[str, object] | None = None,
                 clock: bool = True) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.transports = transports or {}
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.offsets: dict[str, ClockOffset] = {}
        self.notes: list[str] = []
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.hosts)), thread_name_prefix="fleet")

    def __enter__(self) -> Fleet:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        def start(host: Host) -> Session:
            s = Session(host, self.transports.get(host.name))
            if self.clock:
                self.offsets[host.name] = s.clock_offset()
            return s

        futures = {name: self.pool.submit(start, h) for name, h in self.hosts.items()}
        errors: list[VnetdiagError] = []
        for name, fut in futures.items():
            try:
                self.sessions[name] = fut.result()
            except VnetdiagError as exc:
                errors.append(exc)
        if errors:
            # The first host's error decides the exit status; every host's is said.
            first = errors[0]
            if len(errors) > 1:
                first.message += "; also: " + "; ".join(e.message for e in errors[1:])
            raise first

    def session(self, name: str) -> Session:
        return self.sessions[name]

    def call(self, name: str, op: str, **args):
        return self.sessions[name].call(op, **args)

    def call_all(self, op: str, names: Iterable[str] | None = None, *,
                 args_of: Callable[[str], dict] | None = None) -> dict[str, object]:
        """``op`` on several agents at once; the first failure is raised after all answered."""
        names = list(names if names is not None else self.sessions)
        futures = {n: self.pool.submit(self.sessions[n].call, op, **(args_of(n) if args_of else {})) for n in names}
        out, failure = {}, None
        for n, fut in futures.items():
            try:
                out[n] = fut.result()
            except VnetdiagError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return out

    def call_each(self, op: str, names: Iterable[str], **args) -> dict[str, object]:
        """``op`` on several agents at once: each host's value, or the VnetdiagError it raised."""
        futures = {n: self.pool.submit(self.sessions[n].call, op, **args) for n in names}
        out: dict[str, object] = {}
        for n, fut in futures.items():
            try:
                out[n] = fut.result()
            except VnetdiagError as exc:
                out[n] = exc
        return out

    def to_host_mono(self, name: str, coordinator_mono_ns: int) -> int:
        off = self.offsets.get(name)
        return coordinator_mono_ns + (off.offset_ns if off else 0)

    def between(self, src: str, dst: str, mono_ns: int) -> int:
        """``mono_ns`` read on ``src``'s CLOCK_MONOTONIC, on ``dst``'s."""
        a, b = self.offsets.get(src), self.offsets.get(dst)
        return mono_ns - (a.offset_ns if a else 0) + (b.offset_ns if b else 0)

    def close(self) -> None:
        dead = [n for n, s in self.sessions.items() if s.dead is not None]
        list(self.pool.map(lambda s: s.close(), list(self.sessions.values())))
        for name in dead:
            # A fresh agent undoes the dead one's journals (its tracer) before it says hello.
            try:
                Session(self.hosts[name], self.transports.get(name)).close()
                self.notes.append(f"{name}: the agent died mid-run; what it left was undone by a new agent")
            except VnetdiagError as exc:
                self.notes.append(f"{name}: the agent died mid-run and no new agent could clean up: {exc.message} "
                                  f"(run vnetdiag cleanup there)")
        self.sessions.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
