"""TCP evidence the probe reads for itself: TCP_INFO of one socket, and the TCP
MIB counters of the calling thread's network namespace.

The MIB reader takes two counters, parsed by the counters feature's
``collect.procnet.parse_snmp``. ``/proc/thread-self/net`` is used,
not ``/proc/net``: the latter follows the process's main thread, while the probe
enters namespaces per thread.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.collect.procnet import parse_snmp

# struct tcp_info (include/uapi/linux/tcp.h): 8 u8 fields, then u32 fields;
# tcpi_total_retrans is the 24th u32.
_TCP_INFO_LEN = 104
_BACKOFF_OFFSET = 4
_RETRANSMITS_OFFSET = 2
_TOTAL_RETRANS_OFFSET = 8 + 4 * 23
THREAD_NET = Path("/proc/thread-self/net")


@dataclass(frozen=True, kw_only=True, slots=True)
class TcpInfo:
    total_retrans: int
    backoff: int
    retransmits: int


def parse_tcp_info(raw: bytes) -> TcpInfo:
    if len(raw) < _TCP_INFO_LEN:
        raise ValueError(f"TCP_INFO of {len(raw)} bytes, expected at least {_TCP_INFO_LEN}")
    (total,) = struct.unpack_from("=I", raw, _TOTAL_RETRANS_OFFSET)
    return TcpInfo(total_retrans=total, backoff=raw[_BACKOFF_OFFSET], retransmits=raw[_RETRANSMITS_OFFSET])


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """TCP_INFO of a connected socket, or None if the socket is gone."""
    try:
        return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class MibSnapshot:
    retrans_segs: int
    syn_retrans: int


def read_mib(net_dir: Path = THREAD_NET) -> MibSnapshot:
    """TcpRetransSegs and TcpExt TCPSynRetrans of the calling thread's namespace."""
    mib = parse_snmp((net_dir / "snmp").read_text())
    parse_snmp((net_dir / "netstat").read_text(), into=mib)
    return MibSnapshot(retrans_segs=mib.get("Tcp", {}).get("RetransSegs", 0),
                       syn_retrans=mib.get("TcpExt", {}).get("TCPSynRetrans", 0))


def syn_linear_timeouts(sysctl: Path = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")) -> int:
    """net.ipv4.tcp_syn_linear_timeouts of the calling thread's namespace: how many
    SYN retransmissions wait 1 s each before the doubling starts; 0 on kernels
    without it (they double from the first)."""
    try:
        return int(sysctl.read_text())
    except (OSError, ValueError):
        return 0


def rto_min_ms(dst: str, sysctl: Path = Path("/proc/sys/net/ipv4/tcp_rto_min_us")) -> tuple[float, str]:
    """The minimum RTO towards ``dst`` from the calling thread's namespace, and
    where it came from: the route's ``rto_min`` metric ("route"), else the
    namespace's net.ipv4.tcp_rto_min_us ("sysctl"), else Linux's 200 ms
    ("default")."""
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for msg in ipr.route("get", dst=dst):
                metrics = msg.get("RTA_METRICS")
                value = metrics.get("RTAX_RTO_MIN") if metrics else None
                if value:
                    return float(value), "route"
    except Exception:  # noqa: BLE001 - no route, or netlink refused: fall back below
        pass
    try:
        return int(sysctl.read_text()) / 1000.0, "sysctl"
    except (OSError, ValueError):
        return 200.0, "default"
