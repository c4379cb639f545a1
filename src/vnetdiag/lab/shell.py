"""Running iproute2/iptables commands for the lab: the one executor
(system/nsexec.py), with lab namespaces named as the lab names them."""

from __future__ import annotations

from collections.abc import Sequence

from vnetdiag.system import nsexec
from vnetdiag.system.nsexec import need  # noqa: F401  (the lab's callers import it from here)


def run(argv: Sequence[str], *, check: bool = True, timeout_s: float = 30.0):
    """Run a command; on failure raise ToolError with the command and its stderr."""
    return nsexec.run(argv, check=check, timeout_s=timeout_s)


def in_netns(netns: str, argv: Sequence[str], **kw):
    """Run a command inside a lab namespace (with /sys of that namespace)."""
    return nsexec.run(argv, netns=f"/run/netns/{netns}", sysfs=True, **kw)
