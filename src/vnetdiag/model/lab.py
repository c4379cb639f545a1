"""Records describing a lab topology (what to build) and its faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NodeRole = Literal["hypervisor", "guest", "switch"]
NodeKind = Literal["netns", "vm"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One end of a link: an interface inside a lab node."""

    node: str
    name: str
    address: str | None = None
    """IPv4 or IPv6 address with prefix length, e.g. "198.51.100.1/24"."""
    master: str | None = None
    """Bridge (in the same node) this interface is a port of."""
    mtu: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    name: str
    role: NodeRole
    bridges: tuple[str, ...] = ()
    firewall: bool = False
    """A stateful conntrack firewall on the node's forwarding path (bridged
    traffic too, through br_netfilter), like a cloud security group."""
    kind: NodeKind = "netns"
    """"netns": a network namespace; "vm": a QEMU guest (lab/vm.py) whose NICs
    are the ``guest`` ends of taps and macvtaps."""
    memory_mb: int = 256
    """Guest memory (VMs only)."""
    serve: bool = False
    """VMs only: the guest runs vnetdiag's probe server (``probe.server.DEFAULT_PORT``)
    from the host's files, so probes need not be server-less."""
    routes: tuple[tuple[str, str], ...] = ()
    """(destination or "default", gateway) routes added in the node."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Veth:
    a: Endpoint
    b: Endpoint


@dataclass(frozen=True, kw_only=True, slots=True)
class Vxlan:
    node: str
    name: str
    vni: int
    underlay: str
    """Interface in the same node that carries the encapsulated packets."""
    local: str
    remotes: tuple[str, ...]
    """Remote VTEPs, reached by head-end replication (an all-zero FDB entry each)."""
    master: str | None = None
    dstport: int = 4789
    mtu: int = 1500


@dataclass(frozen=True, kw_only=True, slots=True)
class Macvtap:
    node: str
    name: str
    lower: str
    guest: Endpoint
    """The guest's tap interface, which the backend process joins to the macvtap."""
    mode: Literal["bridge", "vepa", "private", "passthru"] = "bridge"


@dataclass(frozen=True, kw_only=True, slots=True)
class Tap:
    """A tap device in a host node, the backend of a VM's virtio-net NIC."""

    node: str
    name: str
    guest: Endpoint
    """The NIC inside the VM (its node is a ``kind = "vm"`` node)."""
    master: str | None = None
    mtu: int | None = None
    queues: int = 1
    """Multiqueue tap: one descriptor per queue, all given to QEMU."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LabSpec:
    prefix: str
    """Namespace names are "<prefix>-<node>", so they never collide with the user's."""
    nodes: tuple[Node, ...]
    veths: tuple[Veth, ...] = ()
    vxlans: tuple[Vxlan, ...] = ()
    macvtaps: tuple[Macvtap, ...] = ()
    taps: tuple[Tap, ...] = ()
    ipv6: bool = True
    """IPv6 on in every namespace, as on a real host (neighbour discovery and MLD
    on each new link); false for a quiet lab whose counters only the test moves."""
    source: str = "<built-in>"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def guests(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.role == "guest")

    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every interface the spec creates, as endpoints (vxlan and macvtap too)."""
        out: list[Endpoint] = []
        for v in self.veths:
            out += [v.a, v.b]
        for x in self.vxlans:
            out.append(Endpoint(node=x.node, name=x.name, master=x.master, mtu=x.mtu))
        for m in self.macvtaps:
            out += [Endpoint(node=m.node, name=m.name), m.guest]
        for t in self.taps:
            out += [Endpoint(node=t.node, name=t.name, master=t.master, mtu=t.mtu), t.guest]
        return tuple(out)

    def is_vm(self, node: str) -> bool:
        return self.node(node).kind == "vm"


FaultKind = Literal["loss", "queue-overflow", "tx-stall", "slow-guest", "conntrack-full", "mtu-mismatch", "vm-pause",
                    "guest-tx-stall"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultRecord:
    id: str
    """Short id, e.g. "f1", unique within the lab."""
    kind: str
    node: str
    device: str
    options: dict = field(default_factory=dict)
    """The fault's parameters after defaults, e.g. {"percent": 5.0, "direction": "in"}."""
    created_s: float = 0.0
    """Unix time when the fault was injected."""

    @property
    def at(self) -> str:
        """Where, as the CLI's --at takes it: "NODE:DEVICE", or "NODE" for node-wide faults."""
        return f"{self.node}:{self.device}" if self.device else self.node
