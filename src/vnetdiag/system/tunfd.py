"""Which device does another process's tun/tap or macvtap file descriptor drive?

/proc/PID/fdinfo names a tun fd's device ("iff:") but not its namespace, and
the same name (eth0) exists in many namespaces. So we borrow the descriptor
with pidfd_getfd(2) (Linux 5.6; root) and ask the device itself:
TUNGETDEVNETNS returns its namespace, SIOCGIFHWADDR a macvtap's MAC. The
borrowed copy is closed at once; the owner's descriptor is untouched.
"""

from __future__ import annotations

import fcntl
import os
import struct

from vnetdiag.system import proc

TUNGETDEVNETNS = 0x54E3  # _IO('T', 227)
SIOCGIFHWADDR = 0x8927


def ask_borrowed(pid: int, fd: int, ask):
    """``ask(copy)`` of ``pid``'s descriptor ``fd`` (None if it cannot be borrowed); the copy is closed after."""
    mine = proc.borrow_fd(pid, fd)
    if mine is None:
        return None
    try:
        return ask(mine)
    finally:
        os.close(mine)


def tun_netns_inode(fd: int) -> int | None:
    """Inode of the namespace of the tun/tap device attached to ``fd``."""
    try:
        nsfd = fcntl.ioctl(fd, TUNGETDEVNETNS)
    except OSError:
        return None
    try:
        return os.fstat(nsfd).st_ino
    finally:
        os.close(nsfd)


def tap_mac(fd: int) -> str | None:
    """MAC of the macvtap device behind a /dev/tapN descriptor."""
    try:
        res = fcntl.ioctl(fd, SIOCGIFHWADDR, b"\0" * 40)
    except OSError:
        return None
    return ":".join(f"{b:02x}" for b in struct.unpack_from("6B", res, 18))
