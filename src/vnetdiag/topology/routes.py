"""Route lookups through the pool's sockets: the kernel decides, as for
``ip route get``; path resolution gets them through a function so its walk
stays a pure function of the topology."""

from __future__ import annotations

from collections.abc import Callable

from vnetdiag.model.topology import Route
from vnetdiag.system import rtnl
from vnetdiag.system.nspool import NetlinkPool

RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 4, 5, 7
# RTN_* route types (linux/rtnetlink.h): the index is the kernel's number.
RTN_NAMES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
             "unreachable", "prohibit", "throw", "nat", "xresolve")

RouteLookup = Callable[[int, str], Route | None]


def decode_route(payload: bytes) -> Route:
    fields = rtnl.RTMSG.unpack_from(payload, 0)
    rtype = fields[7]
    a = rtnl.attrs(payload, rtnl.RTMSG.size)
    return Route(
        type=RTN_NAMES[rtype] if rtype < len(RTN_NAMES) else str(rtype),
        oif=rtnl.u32(payload, a[RTA_OIF]) if RTA_OIF in a else None,
        gateway=rtnl.ip(payload, a[RTA_GATEWAY]) if RTA_GATEWAY in a else None,
        prefsrc=rtnl.ip(payload, a[RTA_PREFSRC]) if RTA_PREFSRC in a else None,
    )


def kernel_lookup(pool: NetlinkPool) -> RouteLookup:
    def lookup(netns_inode: int, dst: str) -> Route | None:
        h = pool.handle(netns_inode)
        if h is None:
            return None
        payload = rtnl.route_get(h.nl, dst)
        return decode_route(payload) if payload else None
    return lookup
