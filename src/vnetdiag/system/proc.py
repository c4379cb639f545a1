"""Process identity that survives pid reuse: (pid, start time in clock ticks),
and another process's descriptors (borrowed with pidfd_getfd)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessId:
    pid: int
    start_ticks: int
    """Field 22 of /proc/PID/stat: start time since boot in clock ticks. With the
    pid it names one process for the life of the machine."""


_libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438  # same number on every architecture since 5.6


def borrow_fd(pid: int, fd: int) -> int | None:
    """A copy of ``pid``'s descriptor ``fd`` in this process (root, Linux 5.6), or None."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        got = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        return got if got >= 0 else None
    finally:
        os.close(pidfd)


def fdinfo(pid: int | str, fd: int | str) -> dict[str, str]:
    """The ``key:<tab>value`` lines of /proc/PID/fdinfo/FD (``pid`` may be "self")."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in f)}


def start_ticks(pid: int, proc_root: Path = Path("/proc")) -> int | None:
    """The start time of ``pid``, or None if there is no such process, or it has
    exited and only waits to be reaped (a zombie holds no resources of ours)."""
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def current() -> ProcessId:
    pid = os.getpid()
    ticks = start_ticks(pid)
    assert ticks is not None
    return ProcessId(pid=pid, start_ticks=ticks)


def is_alive(proc: ProcessId) -> bool:
    return start_ticks(proc.pid) == proc.start_ticks


def comm(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    try:
        return (proc_root / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def terminate(proc: ProcessId, *, timeout_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; a no-op if it is already gone."""
    if not is_alive(proc):
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(proc):
            return
        _reap(proc.pid)
        time.sleep(0.01)
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(proc.pid)


def _reap(pid: int) -> None:
    """Collect a zombie child so it stops looking alive; ignore non-children."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
