"""Running iproute2/iptables commands for the lab: the one executor
(system/nsexec.py), with lab namespaces named as the lab names them; and the
one way the lab starts a helper process (QEMU, the macvtap backend) so that
no kill of ``lab up`` at any instant leaves one the journal does not name."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from vnetdiag.system import nsexec, proc
from vnetdiag.system.undo import Journal, KillProcess, RemovePath
from vnetdiag.system.nsexec import need  # noqa: F401  (the lab's callers import it from here)


def run(argv: Sequence[str], *, check: bool = True, timeout_s: float = 30.0):
    """Run a command; on failure raise ToolError with the command and its stderr."""
    return nsexec.run(argv, check=check, timeout_s=timeout_s)


def path(netns: str) -> str:
    """The namespace file of a lab namespace (named: the lab names all of them)."""
    return f"{nsexec.NAMED_DIR}{netns}"


def in_netns(netns: str, argv: Sequence[str], *, sysfs: bool = True, **kw):
    """Run a command inside a lab namespace (with /sys of that namespace unless
    ``sysfs`` is False, for tools that only speak netlink)."""
    return nsexec.run(argv, netns=path(netns), sysfs=sysfs, **kw)


def argv_in(netns: str, argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` as it runs inside a lab namespace, for the undo journal."""
    return tuple(nsexec.argv_in(path(netns), argv, sysfs=argv[0] not in nsexec.IPROUTE2_TOOLS))


def ip(netns: str, argv: Sequence[str], **kw):
    """An iproute2 command (ip, tc, bridge) inside a lab namespace."""
    return in_netns(netns, argv, sysfs=False, **kw)


def spawn_journaled(argv: Sequence[str], log_path: Path, journal: Journal, *, pass_fds=()) -> subprocess.Popen:
    """Start ``argv`` (stdout and stderr appended to ``log_path``, in a session
    of its own) only after its KillProcess step is in the journal."""
    go_r, go_w = os.pipe()
    journal.record(RemovePath(path=str(log_path)))
    log = open(log_path, "ab")
    # The child is a shell that waits for one line on the pipe, then execs the
    # program (same pid, same start time). Popen itself returns only after an
    # exec, so the gate cannot be Python code in the child. If the parent dies
    # before it journaled the child, the pipe closes and the shell exits.
    # The pipe is the shell's stdin, so the program does not inherit it (it gets /dev/null).
    gate = ["sh", "-c", 'IFS= read -r go; [ "$go" = go ] && exec "$@" </dev/null', "sh", *argv]
    try:
        child = subprocess.Popen(gate, stdin=go_r, stdout=log, stderr=log,
                                 pass_fds=tuple(pass_fds), start_new_session=True)
    finally:
        log.close()
        os.close(go_r)
    try:
        ticks = proc.start_ticks(child.pid) or 0
        journal.record(KillProcess(pid=child.pid, start_ticks=ticks))
        os.write(go_w, b"go\n")
    finally:
        os.close(go_w)
    return child
