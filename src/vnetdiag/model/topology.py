"""The discovered topology: namespaces, interfaces and processes as nodes,
the ways they are joined as edges, plus the tables path resolution needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import IfRef, Namespace

EdgeType = Literal["veth-peer", "master", "lower", "vxlan", "tap-owner", "fdb"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    id: str
    """"netns:<inode>", "<netns inode>:<ifindex>" for interfaces, "proc:<pid>"."""
    type: Literal["netns", "interface", "process"]
    name: str
    netns_inode: int | None
    kind: str | None = None
    """Interface kind (veth, bridge, vxlan, macvtap, tun, ...) or None."""
    attrs: dict = field(default_factory=dict)
    """Type-specific details: mac, mtu, operstate, vni, local/remote, pid, comm, ..."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Edge:
    source: str
    target: str
    type: EdgeType
    attrs: dict = field(default_factory=dict)
    """e.g. {"vni": 100, "remote": "192.0.2.2"} on vxlan edges, {"mac": ...} on fdb edges."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FdbEntry:
    """One bridge or vxlan forwarding-database entry (RTM_NEWNEIGH, AF_BRIDGE)."""

    device: IfRef
    """The port (bridge entries) or the vxlan device (vxlan entries) it points to."""
    bridge_ifindex: int | None
    """NDA_MASTER: the bridge this entry belongs to, None for a device's own table."""
    mac: str
    vlan: int | None
    remote: str | None
    """NDA_DST: the remote VTEP for vxlan entries."""
    vni: int | None
    local: bool
    """The MAC belongs to the port itself (NUD_PERMANENT): frames to it stay on this host."""
    static: bool
    """Added by a user (NUD_NOARP) rather than learned."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Address:
    ref: IfRef
    address: str
    prefixlen: int
    scope: int
    """RT_SCOPE_*: 0 universe (global), 253 link, 254 host."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Neighbour:
    ref: IfRef
    address: str
    mac: str | None
    state: int
    """NUD_* bits (0x02 reachable, 0x04 stale, 0x20 failed, ...)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Topology:
    taken_unix_s: float
    namespaces: tuple[Namespace, ...]
    interfaces: tuple[Interface, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    fdb: tuple[FdbEntry, ...] = ()
    addresses: tuple[Address, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Hop:
    ref: IfRef | None
    """The interface crossed (None for a process hop)."""
    name: str
    netns_inode: int | None
    netns_name: str | None
    kind: str | None
    role: Literal["egress", "ingress", "forward", "process", "deliver", "leave"]
    how: str
    """Why the packet goes here: "route ...", "veth peer", "fdb 52:..:01 on port vm3-p", ..."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PathResult:
    source: str
    destination: str
    src_address: str | None
    dst_address: str
    hops: tuple[Hop, ...]
    complete: bool
    """True when the walk reached the destination's stack."""
    stopped: str | None = None
    """Why the walk stopped short (no route, MAC not learned, loop, ...)."""
    flood_candidates: tuple[str, ...] = ()
    """When the FDB has not learned the MAC: the ports the bridge would flood to."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """The kernel's answer to a route lookup (``ip route get``) in one namespace."""

    type: str
    """"unicast", "local", "blackhole", "unreachable", "prohibit", ... (RTN_*)."""
    oif: int | None
    gateway: str | None
    prefsrc: str | None
