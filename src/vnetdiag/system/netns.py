"""Network namespaces: names, inodes, and entering one from the current thread.

A namespace is identified by the inode of its nsfs file; a name is only a label
(the bind mount under /run/netns). setns(2) on CLONE_NEWNET changes the calling
thread only, so ``entered`` is safe to use from one thread while others stay put.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from vnetdiag.errors import KernelError, NotFoundError, PrivilegeError

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        if err == 1:  # EPERM
            raise PrivilegeError("cannot enter a network namespace: not permitted", hint="run as root")
        raise KernelError("setns failed", errno=err)


def named_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def inode_of(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_ino


def current_inode() -> int:
    return inode_of(f"/proc/self/task/{threading.get_native_id()}/ns/net")


def host_inode() -> int:
    """The namespace of PID 1, which is what users mean by 'the host'."""
    return inode_of("/proc/1/ns/net")


def list_named(run_dir: Path = NETNS_RUN_DIR) -> dict[str, int]:
    """Named namespaces as {name: inode}; stale names (unmounted files) are skipped."""
    out: dict[str, int] = {}
    try:
        entries = sorted(run_dir.iterdir())
    except FileNotFoundError:
        return out
    for entry in entries:
        try:
            st = os.stat(entry)
        except OSError:
            continue
        # An unmounted placeholder is an ordinary empty file on the /run fs, whose
        # device differs from nsfs; a live name is a bind mount of an nsfs inode.
        if st.st_dev != os.stat("/proc/self/ns/net").st_dev:
            continue
        out[entry.name] = st.st_ino
    return out


def resolve(spec: str | int, run_dir: Path = NETNS_RUN_DIR) -> Path:
    """A path that opens the namespace ``spec``: a name under /run/netns, an inode
    number, or "host". Raises NotFoundError naming what exists."""
    if spec in ("host", "init", ""):
        return Path("/proc/1/ns/net")
    text = str(spec)
    named = list_named(run_dir)
    if text in named:
        return run_dir / text
    if text.isdigit():
        inode = int(text)
        for name, ino in named.items():
            if ino == inode:
                return run_dir / name
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                if os.stat(pid_dir / "ns/net").st_ino == inode:
                    return pid_dir / "ns/net"
            except OSError:
                continue
    known = ", ".join(sorted(named)) or "none"
    raise NotFoundError(
        f"no network namespace {text!r}",
        hint=f"named namespaces: {known}; give a name from 'ip netns list' or an inode",
    )


@contextlib.contextmanager
def entered(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the body with this thread inside the namespace at ``path``, then return."""
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"network namespace {os.fspath(path)} vanished") from None
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)
