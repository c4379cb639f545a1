"""A worker: runs the stream threads of its share of the streams and talks to
run_probe over a Pipe. One worker runs as a thread of the caller; more run as
forked processes, so all cores can be used.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from array import array

from vnetdiag.probe.streams import Stream, StreamEnd, Timing, WorkerSpec


class Bsp:
    """Lockstep state shared by the ranks of one worker. The barrier actions run
    while every rank waits, so they alone may write it."""

    def __init__(self, ranks: int, timing: Timing, stop: threading.Event) -> None:
        self.timing = timing
        self.stop = stop
        self.exchange_ns = [0] * ranks
        self.steps = array("q")
        self.running = True
        self.measuring = False
        self._phase = 0
        self.barrier = threading.Barrier(ranks, action=self._action)

    def _action(self) -> None:
        now = time.monotonic_ns()
        if self._phase == 0:  # start of a step: go on?
            self.running = now < self.timing.end_ns and not self.stop.is_set()
            self.measuring = now >= self.timing.measure_ns
        elif self.measuring:  # end of a step: its communication time is the slowest rank's
            self.steps.append(max(self.exchange_ns))
        self._phase ^= 1


def worker_main(conn, spec: WorkerSpec, in_process: bool = False) -> None:
    """Run the streams of one worker; talk to the parent over ``conn`` (a Pipe):
    -> ("ready", None) | ("error", text); <- ("go", t0_ns, warmup_ns, duration_ns);
    -> ("chunks", [...]) repeatedly; <- ("stop",) at any time; -> ("done", [StreamEnd])."""
    if not in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    timing = Timing()
    stop, go = threading.Event(), threading.Event()
    outbox: collections.deque = collections.deque()
    bsp = Bsp(len(spec.stream_ids), timing, stop) if spec.pattern == "bsp" else None
    streams = [Stream(sid, spec, timing, stop, go, outbox, bsp) for sid in spec.stream_ids]
    threads = [threading.Thread(target=s.run, name=f"probe-stream-{s.sid}", daemon=True) for s in streams]
    for t in threads:
        t.start()
    for s in streams:
        s.ready.wait()
    errors = [s.error for s in streams if s.error]
    if errors:
        stop.set()
        go.set()
        conn.send(("error", errors[0]))
        return
    conn.send(("ready", None))
    msg = conn.recv()
    if msg[0] != "go":
        stop.set()
        go.set()
        for t in threads:
            t.join()
        conn.send(("done", [StreamEnd(stream=s.sid, worker=spec.worker, error=s.error, udp=s.udp)
                            for s in streams]))
        return
    _, t0, warmup_ns, duration_ns = msg
    timing.t0_ns, timing.measure_ns, timing.end_ns = t0, t0 + warmup_ns, t0 + warmup_ns + duration_ns
    go.set()
    while any(t.is_alive() for t in threads):
        if conn.poll(0.2):
            if conn.recv()[0] == "stop":
                stop.set()
        _send_chunks(conn, outbox)
    _send_chunks(conn, outbox)
    conn.send(("done", [StreamEnd(stream=s.sid, worker=spec.worker, error=s.error, udp=s.udp)
                        for s in streams]))
    if not in_process:
        conn.close()
        os._exit(0)  # the stream threads are done; skip interpreter teardown


def _send_chunks(conn, outbox: collections.deque) -> None:
    chunks = []
    while outbox:
        chunks.append(outbox.popleft())
    if chunks:
        conn.send(("chunks", chunks))
