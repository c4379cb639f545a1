"""The fleet agent: the library's calls over the agent protocol, on one host.

``vnetdiag agent --netns 'hv1*'`` is started by the coordinator through ssh (no
listening daemon): it says hello, answers requests read from stdin on stdout
(fleet/protocol.py), and answers only for the namespaces of its scope (on a
host whose kernel is shared, as in the tests, or where a user may look at only
some tenants' namespaces).

What it starts is stopped when the coordinator says bye, when stdin closes (the
ssh connection dropped), or on SIGTERM/SIGHUP: probe servers and the probe are
threads of this process, so they end with it; the tracer journals its tracefs
instance itself (``trace-PID``). After a SIGKILL, the next agent on the host
replays the journals of dead agents' tracers before it says hello, so a killed
agent leaves nothing behind once the coordinator has called again (it does, to
clean up, when an agent dies mid-run).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from vnetdiag.errors import NotFoundError, UsageError, VnetdiagError
from vnetdiag.fleet import protocol as proto
from vnetdiag.model.fleet import (
    ClockReading,
    HostSnapshot,
    ProbeAnswer,
    ServeStarted,
    ServeStopped,
    TopologyAnswer,
    TraceAnswer,
)
from vnetdiag.model.namespaces import Namespace
from vnetdiag.model.plain import to_plain

# Journals of process owners an agent may have left behind when killed.
_DEAD_OWNER_PREFIXES = ("trace-", "bpftrace-", "capture-")


class OutOfScope(NotFoundError):
    """A namespace the agent was not scoped to."""


class _Stopped(Exception):
    """SIGTERM or SIGHUP: unwind and stop everything."""


class Scope:
    """The namespaces an agent answers for: ``--netns`` globs (every form), or all."""

    def __init__(self, patterns: Sequence[str]) -> None:
        from vnetdiag.system import netns as netns_mod

        self.patterns = tuple(patterns)
        by_name = netns_mod.matcher(self.patterns)
        # Where PID 1's namespace cannot be read (inside a container, or entered
        # with nsenter), nspool calls the agent's own namespace "host", not by its
        # /run/netns name: match named patterns by the inode behind the name too.
        named = netns_mod.list_named()
        inodes = {named[p] for p in self.patterns if p in named}
        self.only: Callable[[Namespace], bool] | None = None if by_name is None else (
            lambda ns: ns.inode in inodes or by_name(ns))

    def namespaces(self) -> list[Namespace]:
        from vnetdiag.system.nspool import enumerate_namespaces

        pool = enumerate_namespaces()
        return [n for n in pool if self.only is None or self.only(n)]

    def one(self, text: str) -> Namespace:
        """The namespace ``text`` names, if it is in scope."""
        from vnetdiag import naming

        pool = self.namespaces()
        try:
            return naming.namespace(str(text), pool)
        except NotFoundError as exc:
            raise OutOfScope(f"namespace {text} is not among this agent's namespaces ({', '.join(self.patterns) or 'all'})",
                             hint=f"in scope: {', '.join(n.label for n in pool[:8]) or 'none'}") from exc


def replay_dead_journals() -> list[str]:
    """Undo what dead processes (a killed agent's tracer) left; return their owners."""
    from vnetdiag.system.undo import all_journals

    done = []
    for j in all_journals():
        if (j.owner.startswith(_DEAD_OWNER_PREFIXES) and not j.persistent and not j.owner_alive()
                and not j.undo()):
            done.append(j.owner)
    return done


class Agent:
    """The operations (one method each, named by ``protocol.OPERATIONS``) and what they started."""

    def __init__(self, scope: Scope, *, closing: threading.Event | None = None) -> None:
        self.scope = scope
        self.closing = closing or threading.Event()
        self._collector = None
        self._trace = None
        self._servers: dict[int, object] = {}

    # ---- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Stop everything started, in reverse order of risk (the tracer holds kernel state)."""
        self.closing.set()
        if self._trace is not None:
            with contextlib.suppress(Exception):  # stopping anyway: the tracer's journal is the backstop
                self._trace.stop()
            self._trace = None
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        if self._collector is not None:
            self._collector.close()
            self._collector = None

    def handle(self, req: proto.Request):
        """The record answering ``req`` (raises VnetdiagError for a failed operation)."""
        if req.op not in proto.OPERATIONS:
            raise UsageError(f"unknown operation {req.op!r}", hint=f"one of {', '.join(proto.OPERATIONS)}")
        try:
            return getattr(self, f"op_{req.op}")(**req.args)
        except TypeError as exc:  # wrong arguments: the coordinator's bug, said plainly
            raise UsageError(f"bad arguments to {req.op}: {exc}") from None

    def collector(self):
        if self._collector is None:
            from vnetdiag.collect import Collector

            self._collector = Collector(only=self.scope.only)
        return self._collector

    @contextlib.contextmanager
    def narrowed(self, netns: Sequence[str]):
        """The scope's collector, or with ``netns`` (names and globs on this host)
        one of its own for the namespaces in scope that match them."""
        if not netns:
            yield self.collector()
            return
        from vnetdiag.collect import Collector

        # Matched as the scope is (a /run/netns name also by its inode: the agent's own
        # namespace may be listed as "host"); a pattern naming nothing gives nothing.
        extra = Scope([str(n) for n in netns]).only
        only = self.scope.only
        with Collector(only=extra if only is None else (lambda ns: only(ns) and extra(ns))) as col:
            yield col

    # ---- operations --------------------------------------------------------------

    def op_snapshot(self, rules: bool = True, netns: Sequence[str] = ()) -> HostSnapshot:
        from vnetdiag.collect.netfilter import read_drop_rules

        with self.narrowed(netns) as col:
            snap = col.snapshot()
        mono = time.monotonic_ns()
        found, problems = read_drop_rules(snap.namespaces) if rules else ([], [])
        return HostSnapshot(snapshot=snap, rules=tuple(found), problems=tuple(problems), mono_ns=mono)

    def op_trace_start(self, backend: str = "auto", filter: str | None = None) -> ClockReading:
        from vnetdiag.collect.droptrace import DropTrace

        if self._trace is not None:
            raise UsageError("a trace window is already running on this agent")
        window = DropTrace(backend=backend, filter=filter, namespaces=list(self.scope.patterns) or None)
        window.start()
        self._trace = window
        return ClockReading(mono_ns=time.monotonic_ns(), wall_ns=time.time_ns())

    def op_trace_stop(self) -> TraceAnswer:
        import dataclasses

        from vnetdiag.fleet.scoping import scoped_drops, scoped_trace

        if self._trace is None:
            raise UsageError("no trace window is running on this agent", hint="trace_start first")
        window, self._trace = self._trace, None
        result = window.stop()
        mine = self.scope.namespaces()
        analysis = result.analysis
        if analysis is not None:
            analysis = scoped_trace(analysis, {n.label for n in mine})
        return TraceAnswer(drops=scoped_drops(dataclasses.replace(result, analysis=None), {n.inode for n in mine}),
                           analysis=analysis)

    def op_serve_start(self, netns: str, bind: str, port: int) -> ServeStarted:
        from vnetdiag.probe.server import Server

        ns = self.scope.one(netns)
        if port in self._servers:
            raise UsageError(f"a probe server already listens on port {port} here")
        server = Server(bind=bind, port=port, netns=ns.path)
        server.start()
        server.serve_in_thread()
        self._servers[port] = server
        return ServeStarted(bind=bind, port=server.address[1], netns_inode=ns.inode)

    def op_serve_stop(self, port: int) -> ServeStopped:
        server = self._servers.pop(port, None)
        if server is None:
            raise UsageError(f"no probe server on port {port} here")
        stats = server.stats()
        server.stop()
        return ServeStopped(port=port, accepted=stats.accepted, protocol_errors=stats.protocol_errors)

    def op_probe(self, netns: str, target: str, port: int, pattern: str = "tcp-rr", streams: int = 16,
                 duration_s: float = 5.0, warmup_s: float = 0.5, request_bytes: int = 1, response_bytes: int = 1,
                 connect_timeout_s: float = 5.0, grace_s: float = 1.5) -> ProbeAnswer:
        from vnetdiag.probe.client import run_probe

        ns = self.scope.one(netns)
        started: list[int] = []
        stop = threading.Event()
        # The window ends on time (as in one-host diagnose), or when the coordinator goes away.
        timer = threading.Timer(warmup_s + duration_s + grace_s, stop.set)
        timer.daemon = True
        watcher = threading.Thread(target=lambda: (self.closing.wait(), stop.set()), daemon=True)
        watcher.start()

        def on_phase(phase: str) -> None:
            if phase == "start":
                started.append(time.monotonic_ns())
                timer.start()

        try:
            result = run_probe(target, port=port, pattern=pattern, streams=streams, duration_s=duration_s,
                               warmup_s=warmup_s, request_bytes=request_bytes, response_bytes=response_bytes,
                               netns=ns.path, stop=stop, connect_timeout_s=connect_timeout_s, on_phase=on_phase)
        except VnetdiagError as exc:
            return ProbeAnswer(result=None, failure=exc.message)
        finally:
            timer.cancel()
        return ProbeAnswer(result=result, started_mono_ns=started[0] if started else None)

    def op_topology(self, paths: Sequence[Sequence[str]] = (), full: bool = False,
                    netns: Sequence[str] = ()) -> TopologyAnswer:
        from vnetdiag.topology import discover
        from vnetdiag.topology.path import resolve
        from vnetdiag.topology.routes import kernel_lookup

        with self.narrowed(netns) as col:
            topo = discover(col.snapshot(), col.pool)
            lookup = kernel_lookup(col.pool)
            walked = []
            for src, dst_addr, *dst_netns in paths:
                ns = self.scope.one(src)
                # Without a destination namespace, "this namespace, that address": the walk
                # follows the packet as far as this host sees it (to the tunnel or the wire).
                to = self.scope.one(dst_netns[0]) if dst_netns else ns
                walked.append(resolve(topo, lookup, f"netns:{ns.inode}", f"netns:{to.inode}:{dst_addr}"))
        return TopologyAnswer(topology=topo if full else None, paths=tuple(walked))

    def op_clock(self) -> ClockReading:
        return ClockReading(mono_ns=time.monotonic_ns(), wall_ns=time.time_ns())

    def op_bye(self) -> None:
        self.close()


def serve(scope: Scope, rx: BinaryIO, tx: BinaryIO) -> int:
    """Speak the protocol on ``rx``/``tx`` until bye or end of input; stop everything started."""
    from vnetdiag import __version__

    lock = threading.Lock()

    def send(msg) -> None:
        with lock:
            try:
                tx.write(proto.encode(msg))
                tx.flush()
            except (BrokenPipeError, OSError):
                closing.set()  # the coordinator is gone: nobody to answer

    closing = threading.Event()
    agent = Agent(scope, closing=closing)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in rx:
            lines.put(line)
        closing.set()  # end of input: stop a running probe now, not at its window's end
        lines.put(None)

    def on_signal(signum, _frame) -> None:
        closing.set()
        raise _Stopped(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        replay_dead_journals()
        send(proto.Hello(protocol=proto.PROTOCOL_VERSION, version=__version__, host=socket.gethostname(),
                         pid=os.getpid(), scope=scope.patterns))
        threading.Thread(target=read, daemon=True, name="agent-stdin").start()
        while True:
            line = lines.get()
            if line is None:
                return 0
            if not line.strip():
                continue
            try:
                msg = proto.decode(line)
            except proto.ProtocolError as exc:
                send(proto.Error(id=None, kind="bad-request", message=exc.message, hint=exc.hint))
                continue
            if not isinstance(msg, proto.Request):
                send(proto.Error(id=None, kind="bad-request", message=f"expected a request, got {msg.type}"))
                continue
            try:
                value = agent.handle(msg)
            except _Stopped:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is an answer, the agent goes on
                send(proto.error_of(msg.id, exc))
                continue
            try:
                answer = proto.Result(id=msg.id, op=msg.op, value=to_plain(value))
                proto.encode(answer)  # what cannot be encoded is an error answer, not a dead agent
            except (TypeError, ValueError) as exc:
                send(proto.error_of(msg.id, exc))
                continue
            send(answer)
            if msg.op == "bye":
                return 0
    except _Stopped:
        return 0
    finally:
        agent.close()


def protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """stdin and a private copy of stdout for the protocol; fd 1 then points at
    stderr, so nothing a library or tool prints can corrupt the protocol stream."""
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin.buffer, os.fdopen(out_fd, "wb", buffering=0)
