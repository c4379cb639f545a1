"""The ethtool ioctl (SIOCETHTOOL): driver info, driver statistics, features.

The ioctl acts in the namespace of the socket it is issued on, so callers pass
a socket fd opened in the interface's namespace (the namespace's rtnetlink
socket works: netlink sockets hand unknown ioctls to the device layer).
Statistic and feature *names* come from the driver (ETHTOOL_GSTRINGS), never
from a table here.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x03
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETH_SS_STATS = 1
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32

# Errors that mean "this driver does not offer that": not a failure of vnetdiag.
UNSUPPORTED = {_errno.EOPNOTSUPP, _errno.ENOTSUP, _errno.EINVAL, _errno.ENODEV, _errno.ENOTTY}


def _ioctl(fd: int, ifname: str, buf: ctypes.Array) -> None:
    ifreq = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(buf)) + b"\0" * 16
    fcntl.ioctl(fd, SIOCETHTOOL, ifreq)


def sset_count(fd: int, ifname: str, sset: int) -> int:
    """How many strings the driver has in string set ``sset`` (0 if none)."""
    buf = ctypes.create_string_buffer(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0, 1 << sset, 0))
    _ioctl(fd, ifname, buf)
    _cmd, _res, mask, count = struct.unpack("=IIQI", buf.raw[:20])
    return count if mask & (1 << sset) else 0


def strings(fd: int, ifname: str, sset: int) -> list[str]:
    n = sset_count(fd, ifname, sset)
    if n == 0:
        return []
    buf = ctypes.create_string_buffer(12 + n * ETH_GSTRING_LEN)
    struct.pack_into("=III", buf, 0, ETHTOOL_GSTRINGS, sset, n)
    _ioctl(fd, ifname, buf)
    n = struct.unpack_from("=I", buf, 8)[0]
    raw = buf.raw[12 : 12 + n * ETH_GSTRING_LEN]
    return [raw[i : i + ETH_GSTRING_LEN].split(b"\0", 1)[0].decode("ascii", "replace")
            for i in range(0, len(raw), ETH_GSTRING_LEN)]


class StatsReader:
    """Reads one device's driver statistics; names are fetched once and kept
    (re-fetched if the driver reports a different count)."""

    __slots__ = ("names", "_buf", "_cap")

    def __init__(self, fd: int, ifname: str) -> None:
        self.names = strings(fd, ifname, ETH_SS_STATS)
        # Kernels since 6.x copy at most the n_stats we pass and report 0 when it
        # does not match the driver's count: pass exactly ours, detect changes.
        self._cap = len(self.names)
        self._buf = ctypes.create_string_buffer(8 + 8 * self._cap)

    def read(self, fd: int, ifname: str) -> list[int] | None:
        """Current values in name order, or None when the count changed (the
        caller makes a new reader)."""
        if not self.names:
            return []
        struct.pack_into("=II", self._buf, 0, ETHTOOL_GSTATS, self._cap)
        _ioctl(fd, ifname, self._buf)
        n = struct.unpack_from("=I", self._buf, 4)[0]
        if n != len(self.names):
            return None
        return list(struct.unpack_from(f"={n}Q", self._buf, 8))


def drvinfo(fd: int, ifname: str) -> dict[str, str]:
    """driver, version, fw_version, bus_info (empty strings when the driver has none)."""
    buf = ctypes.create_string_buffer(196)
    struct.pack_into("=I", buf, 0, ETHTOOL_GDRVINFO)
    _ioctl(fd, ifname, buf)
    fields = struct.unpack_from("=32s32s32s32s", buf, 4)
    names = ("driver", "version", "fw_version", "bus_info")
    return {k: v.split(b"\0", 1)[0].decode("ascii", "replace") for k, v in zip(names, fields)}


def features(fd: int, ifname: str) -> dict[str, bool]:
    """Active offload features by the kernel's names (e.g. tx-scatter-gather)."""
    names = strings(fd, ifname, ETH_SS_FEATURES)
    if not names:
        return {}
    blocks = (len(names) + 31) // 32
    buf = ctypes.create_string_buffer(8 + 16 * blocks)
    struct.pack_into("=II", buf, 0, ETHTOOL_GFEATURES, blocks)
    _ioctl(fd, ifname, buf)
    out: dict[str, bool] = {}
    for i, name in enumerate(names):
        if not name:
            continue
        _avail, _req, active, _never = struct.unpack_from("=IIII", buf, 8 + 16 * (i // 32))
        out[name] = bool(active & (1 << (i % 32)))
    return out
