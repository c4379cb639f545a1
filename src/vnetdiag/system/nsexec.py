"""The one place that runs external tools, in a namespace or not.

Python code enters a namespace with ``netns.entered`` (setns on one thread);
external tools (ip, tc, nft, iptables-save, conntrack, tcpdump, bpftrace...)
run through ``run`` or ``popen`` here, given a namespace *identity* (a
``Namespace`` record or a path that opens one), never a name typed into an
argv. A failure is a ``ToolError`` carrying the tool's own stderr.

``nsenter --net=PATH`` is used rather than ``ip netns exec``: it takes any
namespace file (``/run/netns/NAME``, ``/proc/PID/ns/net``), so unnamed
namespaces held by containers and VMs work the same as named ones. Tools that
read ``/sys/class/net`` need that namespace's sysfs; ``sysfs=True`` mounts it
in a private mount namespace, as ``ip netns exec`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Protocol

from vnetdiag.errors import KernelError, MissingFeatureError


class _HasPath(Protocol):
    path: str


NsTarget = _HasPath | str | os.PathLike[str] | None
"""A ``Namespace`` record, a path to a namespace file, or None for here."""


class ToolError(KernelError):
    """An external tool exited non-zero; ``stderr`` is what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, hint: str | None = None) -> None:
        lines = (stderr or "").strip().splitlines()
        super().__init__(f"{' '.join(argv)} failed: {lines[-1] if lines else f'exit status {returncode}'}",
                         hint=hint)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def need(tool: str, package: str) -> str:
    """The path of ``tool``, or MissingFeatureError naming the Debian package."""
    path = shutil.which(tool)
    if path is None:
        raise MissingFeatureError(f"{tool} is not installed", hint=f"apt-get install {package} (or run ./setup.sh)")
    return path


def ns_path(target: NsTarget) -> str | None:
    if target is None:
        return None
    path = getattr(target, "path", target)
    return os.fspath(path)


def _is_here(path: str) -> bool:
    try:
        return os.stat(path).st_ino == os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return False


NAMED_DIR = "/run/netns/"
IPROUTE2_TOOLS = frozenset({"ip", "tc", "bridge"})
"""Tools that enter a named namespace themselves (``-n NAME``): no nsenter process."""


def argv_in(target: NsTarget, argv: Sequence[str], *, sysfs: bool = False) -> list[str]:
    """``argv`` wrapped so that it runs in the namespace ``target``."""
    path = ns_path(target)
    if path is None or (not sysfs and _is_here(path)):
        return list(argv)
    name = path[len(NAMED_DIR):] if path.startswith(NAMED_DIR) else ""
    if not sysfs and argv and argv[0] in IPROUTE2_TOOLS and name and "/" not in name:
        return [argv[0], "-n", name, *argv[1:]]
    if sysfs:
        # A private mount namespace, then this namespace's sysfs over /sys: what
        # `ip netns exec` does, for any namespace file.
        script = 'mount -t sysfs none /sys 2>/dev/null; exec "$@"'
        return ["nsenter", f"--net={path}", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "sh", *argv]
    return ["nsenter", f"--net={path}", *argv]


def run(argv: Sequence[str], *, netns: NsTarget = None, check: bool = True, timeout_s: float = 30.0,
        input: str | None = None, sysfs: bool = False, hint: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool (in ``netns``); on failure with ``check`` raise ToolError with its stderr."""
    full = argv_in(netns, argv, sysfs=sysfs)
    try:
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout_s, input=input)
    except FileNotFoundError:
        raise MissingFeatureError(f"{full[0]} is not installed", hint="run ./setup.sh") from None
    except subprocess.TimeoutExpired:
        raise KernelError(f"{' '.join(argv)} did not finish within {timeout_s:g} s") from None
    if check and result.returncode != 0:
        raise ToolError(argv, result.returncode, result.stderr or result.stdout, hint=hint)
    return result


def popen(argv: Sequence[str], *, netns: NsTarget = None, **kw) -> subprocess.Popen:
    """Start a long-running tool (in ``netns``); the caller journals and stops it."""
    full = argv_in(netns, argv)
    try:
        return subprocess.Popen(full, **kw)
    except FileNotFoundError:
        raise MissingFeatureError(f"{full[0]} is not installed", hint="run ./setup.sh") from None
