"""Decode RTM_NEWLINK messages into inventory records and stats64 counters."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vnetdiag.model.interfaces import TunInfo, VxlanInfo
from vnetdiag.system import rtnl

# struct rtnl_link_stats64 (linux/if_link.h), in order. A kernel that sends more
# fields than listed gets them as "field_N", fewer are simply absent.
STATS64_FIELDS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
    "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
    "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
    "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
    "rx_nohandler", "rx_otherhost_dropped",
)
# IF_OPER_* (RFC 2863 operational states, linux/if.h).
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
# MACVLAN_MODE_* bits (linux/if_link.h).
MACVLAN_MODES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_TXQLEN, IFLA_OPERSTATE, IFLA_LINKINFO = 10, 13, 16, 18
IFLA_IFALIAS, IFLA_NUM_VF, IFLA_STATS64 = 20, 21, 23
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER = 31, 32, 33
IFLA_CARRIER_CHANGES, IFLA_LINK_NETNSID = 35, 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND = 1, 2, 4
IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 2, 3, 4
IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 15, 16, 17
IFLA_TUN_OWNER, IFLA_TUN_TYPE, IFLA_TUN_VNET_HDR = 1, 3, 5
IFLA_TUN_PERSIST, IFLA_TUN_MULTI_QUEUE, IFLA_TUN_NUM_QUEUES = 6, 7, 8
IFLA_MACVLAN_MODE = 1

_STATS_STRUCTS: dict[int, struct.Struct] = {}
_LINKINFO_MEMO: dict[bytes, tuple] = {}


@dataclass(slots=True)
class RawLink:
    """One decoded link message before namespace ids are resolved."""

    ifindex: int
    flags: int
    name: str
    kind: str | None
    slave_kind: str | None
    mac: str | None
    mtu: int
    txqlen: int
    operstate: str
    carrier: bool | None
    carrier_changes: int | None
    master: int | None
    link: int | None
    link_netnsid: int | None
    num_tx_queues: int | None
    num_rx_queues: int | None
    num_vf: int | None
    alias: str | None
    stats: dict[str, int]
    vxlan: VxlanInfo | None
    tun: TunInfo | None
    macvlan_mode: str | None


def decode_stats64(data: bytes, span: tuple[int, int]) -> dict[str, int]:
    n = (span[1] - span[0]) // 8
    st = _STATS_STRUCTS.get(n)
    if st is None:
        st = _STATS_STRUCTS[n] = struct.Struct(f"={n}Q")
    values = st.unpack_from(data, span[0])
    names = STATS64_FIELDS if n <= len(STATS64_FIELDS) else STATS64_FIELDS + tuple(
        f"field_{i}" for i in range(len(STATS64_FIELDS), n))
    return dict(zip(names, values))


def _linkinfo(data: bytes, span: tuple[int, int]):
    info = rtnl.attrs(data, span[0], span[1])
    kind = rtnl.string(data, info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
    slave = rtnl.string(data, info[IFLA_INFO_SLAVE_KIND]) if IFLA_INFO_SLAVE_KIND in info else None
    vx = tun = mode = None
    if IFLA_INFO_DATA in info:
        d0, d1 = info[IFLA_INFO_DATA]
        a = rtnl.attrs(data, d0, d1)
        if kind == "vxlan":
            remote = a.get(IFLA_VXLAN_GROUP) or a.get(IFLA_VXLAN_GROUP6)
            local = a.get(IFLA_VXLAN_LOCAL) or a.get(IFLA_VXLAN_LOCAL6)
            vx = VxlanInfo(
                vni=rtnl.u32(data, a[IFLA_VXLAN_ID]) if IFLA_VXLAN_ID in a else 0,
                local=rtnl.ip(data, local) if local else None,
                remote=rtnl.ip(data, remote) if remote else None,
                port=rtnl.be16(data, a[IFLA_VXLAN_PORT]) if IFLA_VXLAN_PORT in a else 0,
                underlay_ifindex=(rtnl.u32(data, a[IFLA_VXLAN_LINK]) or None) if IFLA_VXLAN_LINK in a else None,
            )
        elif kind == "tun":
            ttype = rtnl.u8(data, a[IFLA_TUN_TYPE]) if IFLA_TUN_TYPE in a else 0
            owner = rtnl.u32(data, a[IFLA_TUN_OWNER]) if IFLA_TUN_OWNER in a else None
            tun = TunInfo(
                type={1: "tun", 2: "tap"}.get(ttype, str(ttype)),
                owner_uid=None if owner in (None, 0xFFFFFFFF) else owner,
                multi_queue=bool(rtnl.u8(data, a[IFLA_TUN_MULTI_QUEUE])) if IFLA_TUN_MULTI_QUEUE in a else False,
                persist=bool(rtnl.u8(data, a[IFLA_TUN_PERSIST])) if IFLA_TUN_PERSIST in a else False,
                vnet_hdr=bool(rtnl.u8(data, a[IFLA_TUN_VNET_HDR])) if IFLA_TUN_VNET_HDR in a else False,
                num_queues=rtnl.u32(data, a[IFLA_TUN_NUM_QUEUES]) if IFLA_TUN_NUM_QUEUES in a else None,
            )
        elif kind in ("macvlan", "macvtap") and IFLA_MACVLAN_MODE in a:
            m = rtnl.u32(data, a[IFLA_MACVLAN_MODE])
            mode = MACVLAN_MODES.get(m, str(m))
    return kind, slave, vx, tun, mode


def decode_link(payload: bytes) -> RawLink:
    _family, _type, ifindex, flags, _change = rtnl.IFINFOMSG.unpack_from(payload, 0)
    a = rtnl.attrs(payload, rtnl.IFINFOMSG.size)
    get = a.get
    kind = slave = vx = tun = mode = None
    if IFLA_LINKINFO in a:
        # Decoding is a pure function of these bytes, which rarely change: memoise.
        span = a[IFLA_LINKINFO]
        raw = payload[span[0] : span[1]]
        got = _LINKINFO_MEMO.get(raw)
        if got is None:
            if len(_LINKINFO_MEMO) > 4096:
                _LINKINFO_MEMO.clear()
            got = _LINKINFO_MEMO[raw] = _linkinfo(raw, (0, len(raw)))
        kind, slave, vx, tun, mode = got
    op = rtnl.u8(payload, a[IFLA_OPERSTATE]) if IFLA_OPERSTATE in a else 0
    u32 = rtnl.u32
    return RawLink(
        ifindex=ifindex,
        flags=flags,
        name=rtnl.string(payload, a[IFLA_IFNAME]) if IFLA_IFNAME in a else f"if{ifindex}",
        kind=kind,
        slave_kind=slave,
        mac=rtnl.mac(payload, a[IFLA_ADDRESS]) if IFLA_ADDRESS in a else None,
        mtu=u32(payload, a[IFLA_MTU]) if IFLA_MTU in a else 0,
        txqlen=u32(payload, a[IFLA_TXQLEN]) if IFLA_TXQLEN in a else 0,
        operstate=OPERSTATES[op] if op < len(OPERSTATES) else str(op),
        carrier=bool(rtnl.u8(payload, a[IFLA_CARRIER])) if IFLA_CARRIER in a else None,
        carrier_changes=u32(payload, a[IFLA_CARRIER_CHANGES]) if IFLA_CARRIER_CHANGES in a else None,
        master=u32(payload, a[IFLA_MASTER]) if get(IFLA_MASTER) else None,
        link=(u32(payload, a[IFLA_LINK]) or None) if IFLA_LINK in a else None,
        link_netnsid=rtnl.s32(payload, a[IFLA_LINK_NETNSID]) if IFLA_LINK_NETNSID in a else None,
        num_tx_queues=u32(payload, a[IFLA_NUM_TX_QUEUES]) if IFLA_NUM_TX_QUEUES in a else None,
        num_rx_queues=u32(payload, a[IFLA_NUM_RX_QUEUES]) if IFLA_NUM_RX_QUEUES in a else None,
        num_vf=u32(payload, a[IFLA_NUM_VF]) if IFLA_NUM_VF in a else None,
        alias=rtnl.string(payload, a[IFLA_IFALIAS]) if IFLA_IFALIAS in a else None,
        stats=decode_stats64(payload, a[IFLA_STATS64]) if IFLA_STATS64 in a else {},
        vxlan=vx,
        tun=tun,
        macvlan_mode=mode,
    )
