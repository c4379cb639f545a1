"""A helper process's BPF programs, held so that the kernel's counts of them stay readable.

The kernel does not run a tracing program while another BPF program is
running on the same CPU (its recursion guard): a drop in a softirq that
interrupted the program's run in task context is skipped. Such an event is
neither in the program's maps nor in its stream; the kernel only counts it, in
the program's ``recursion_misses`` (fdinfo). A tracer whose counts must match
the kernel's has to say how many there were.

The count is final only once the program is detached, when bpftrace has
exited and closed its descriptors. So ``HeldPrograms`` duplicates the
descriptors (pidfd_getfd) while the probes are live and reads the final
counts from vnetdiag's own fdinfo. The duplicates keep the programs loaded,
not attached (the attachment is bpftrace's perf event), and close with
``close()`` or with vnetdiag's process: nothing outlives it.
"""

from __future__ import annotations

import ctypes
import os

_SYS_PIDFD_GETFD = 438
"""The same number on every architecture (the unified table of syscalls added since 5.1)."""
_PROG_LINK = "anon_inode:bpf-prog"


def fdinfo(path: str) -> dict[str, str]:
    """``key:<tab>value`` lines of a /proc/PID/fdinfo/FD file."""
    with open(path) as f:
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in f)}


def _getfd(pidfd: int, fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    got = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    if got < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return got


class HeldPrograms:
    """Duplicates of a process's BPF program descriptors of one type (all types for None)."""

    def __init__(self, pid: int, prog_type: int | None) -> None:
        self.fds: list[int] = []
        pidfd = os.pidfd_open(pid)
        seen: set[str] = set()
        try:
            for name in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{name}") != _PROG_LINK:
                        continue
                    info = fdinfo(f"/proc/{pid}/fdinfo/{name}")
                except OSError:
                    continue  # closed meanwhile
                if prog_type is not None and info.get("prog_type") != str(prog_type) or info.get("prog_id") in seen:
                    continue
                seen.add(info.get("prog_id", ""))
                self.fds.append(_getfd(pidfd, int(name)))
        except BaseException:
            self.close()
            raise
        finally:
            os.close(pidfd)

    def recursion_misses(self) -> int:
        """Events the kernel did not run the held programs for, since they were loaded."""
        return sum(int(fdinfo(f"/proc/self/fdinfo/{fd}").get("recursion_misses", "0")) for fd in self.fds)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
