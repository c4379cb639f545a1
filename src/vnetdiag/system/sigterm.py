"""SIGTERM as Ctrl-C while a kernel resource is held.

A tracer that holds an ftrace instance or a bpftrace process turns SIGTERM
into KeyboardInterrupt, so ``kill PID`` unwinds through the same ``finally``
blocks as Ctrl-C: the result is printed and the resource released. Only the
main thread can set signal handlers; elsewhere this does nothing.
"""

from __future__ import annotations

import signal
import threading


class TermAsInterrupt:
    """install() while holding the resource, restore() when it is released (safe twice)."""

    def __init__(self) -> None:
        self._old = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum, frame):
            raise KeyboardInterrupt

        self._old = signal.signal(signal.SIGTERM, on_term)

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None
