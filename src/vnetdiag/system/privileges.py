"""Checks for the privileges a feature needs, so it can refuse early and say why."""

from __future__ import annotations

import os

from vnetdiag.errors import PrivilegeError

# CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21): namespaces, links, tracefs.
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21


def _effective_caps() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_net_admin() -> bool:
    return bool(_effective_caps() & (1 << _CAP_NET_ADMIN))


def has_sys_admin() -> bool:
    return bool(_effective_caps() & (1 << _CAP_SYS_ADMIN))


def require_root(feature: str) -> None:
    """Raise PrivilegeError unless the process may change namespaces and links."""
    if os.geteuid() != 0 and not (has_net_admin() and has_sys_admin()):
        raise PrivilegeError(
            f"{feature} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            hint=f"run it with sudo: sudo vnetdiag {feature}",
        )
