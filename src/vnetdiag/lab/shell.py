"""Running iproute2/iptables commands for the lab: the one executor
(system/nsexec.py), with lab namespaces named as the lab names them."""

from __future__ import annotations

from collections.abc import Sequence

from vnetdiag.system import nsexec
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
