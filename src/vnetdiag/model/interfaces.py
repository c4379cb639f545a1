"""Inventory: how each interface is built (kind, driver, links to other devices)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vnetdiag.model.namespaces import IfRef


@dataclass(frozen=True, kw_only=True, slots=True)
class VxlanInfo:
    vni: int
    local: str | None
    """Local VTEP address (IFLA_VXLAN_LOCAL/LOCAL6), None if unset."""
    remote: str | None
    """Remote VTEP or multicast group (IFLA_VXLAN_GROUP/GROUP6), None if unset."""
    port: int
    """UDP destination port."""
    underlay_ifindex: int | None
    """IFLA_VXLAN_LINK: the underlay device in the same namespace, if pinned."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TunInfo:
    type: str
    """"tun" or "tap" (IFLA_TUN_TYPE)."""
    owner_uid: int | None
    multi_queue: bool
    persist: bool
    vnet_hdr: bool
    num_queues: int | None
    """Queues currently attached (open file descriptors)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Interface:
    """One interface as the kernel describes it over rtnetlink and ethtool."""

    ref: IfRef
    name: str
    netns_name: str | None
    """Its namespace's label for people (model.namespaces.label); joins use ``ref``."""
    kind: str | None
    """IFLA_INFO_KIND as the kernel names it (veth, bridge, macvtap, tun, vxlan,
    ...); None for devices without rtnl link ops (physical NICs, loopback)."""
    slave_kind: str | None
    """IFLA_INFO_SLAVE_KIND: the kind of the master it is enslaved to (bridge, bond)."""
    driver: str | None
    """ethtool driver name (virtio_net, veth, tun, ...), None if unavailable."""
    bus_info: str | None
    mac: str | None
    mtu: int
    txqlen: int
    operstate: str
    """RFC 2863 state name from IFLA_OPERSTATE (up, down, lowerlayerdown, unknown, ...)."""
    flags: int
    """IFF_* flags (IFF_UP = 1)."""
    carrier: bool | None
    carrier_changes: int | None
    master_ifindex: int | None
    """IFLA_MASTER: a bridge or bond in the same namespace."""
    link_ifindex: int | None
    """IFLA_LINK: the peer (veth) or lower device (macvlan, macvtap, vlan); in
    ``link_netnsid``'s namespace when that is set."""
    link_netnsid: int | None
    """IFLA_LINK_NETNSID: the id this namespace gives to the namespace of the link."""
    link: IfRef | None
    """``link_ifindex`` resolved to an interface identity (namespace inode from
    the netns id), None when it could not be resolved exactly."""
    num_tx_queues: int | None
    num_rx_queues: int | None
    num_vf: int | None
    """SR-IOV virtual functions (IFLA_NUM_VF), None when not SR-IOV capable."""
    features: dict[str, bool] = field(default_factory=dict)
    """ethtool offload features by kernel name -> active."""
    vxlan: VxlanInfo | None = None
    tun: TunInfo | None = None
    macvlan_mode: str | None = None
    """macvlan/macvtap mode (private, vepa, bridge, passthru, source)."""
    alias: str | None = None

    @property
    def id(self) -> str:
        return self.ref.id
