"""A helper process's BPF programs, held so that the kernel's counts of them stay readable.

The kernel does not run a tracing program while another BPF program is
running on the same CPU (its recursion guard): a drop in a softirq that
interrupted the program's run in task context is skipped. Such an event is
neither in the program's maps nor in its stream. The kernel counts the skips
in the program's ``recursion_misses`` (fdinfo): a floor, since a few per cent
of skips were measured to go uncounted, and a rare drop was measured missing
with the count at 0 (docs/tracing.md). A tracer whose counts must match the
kernel's has to say what the kernel counted.

The count is final only once the program is detached, when bpftrace has
exited and closed its descriptors. So ``HeldPrograms`` borrows the
descriptors (system/proc.borrow_fd) while the probes are live and reads the
final counts from vnetdiag's own fdinfo. The copies keep the programs
loaded, not attached (the attachment is bpftrace's perf event), and close
with ``close()`` or with vnetdiag's process: nothing outlives it.
"""

from __future__ import annotations

import os

from vnetdiag.system import proc

_PROG_LINK = "anon_inode:bpf-prog"


class HeldPrograms:
    """Copies of a process's descriptors of BPF programs of one type (a BPF_PROG_TYPE_* value)."""

    def __init__(self, pid: int, prog_type: int) -> None:
        self.fds: list[int] = []
        seen: set[str] = set()
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") != _PROG_LINK:
                    continue
                info = proc.fdinfo(pid, name)
            except OSError:
                continue  # closed meanwhile
            if info.get("prog_type") != str(prog_type) or info.get("prog_id") in seen:
                continue
            mine = proc.borrow_fd(pid, int(name))
            if mine is not None:
                seen.add(info.get("prog_id", ""))
                self.fds.append(mine)

    def recursion_misses(self) -> int:
        """Events the kernel did not run the held programs for, since they were loaded."""
        return sum(int(proc.fdinfo("self", fd).get("recursion_misses", "0")) for fd in self.fds)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
