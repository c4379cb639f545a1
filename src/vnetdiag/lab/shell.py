"""Running iproute2/iptables commands inside lab namespaces, with clear errors."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from vnetdiag.errors import KernelError, MissingFeatureError


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingFeatureError(f"{tool} is not installed", hint=f"apt-get install {package} (or run ./setup.sh)")
    return path


def run(argv: Sequence[str], *, check: bool = True, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """Run a command; on failure raise KernelError with the command and its stderr."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise MissingFeatureError(f"{argv[0]} is not installed", hint="run ./setup.sh") from None
    if check and result.returncode != 0:
        err = (result.stderr or result.stdout).strip().splitlines()
        raise KernelError(f"{' '.join(argv)} failed: {err[-1] if err else f'exit {result.returncode}'}")
    return result


def in_netns(netns: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run a command inside a named namespace (with /sys of that namespace)."""
    return run(["ip", "netns", "exec", netns, *argv], **kw)
