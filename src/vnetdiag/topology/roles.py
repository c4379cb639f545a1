"""What each namespace is for, inferred from how it is wired (pure).

Pictures group namespaces host -> fabric -> hypervisors -> guests. Nothing
declares these roles (a namespace is only an inode with devices), so they are
read from the graph: a namespace holding a bridge, a vxlan or a macvtap device
switches traffic for others (a hypervisor); the one whose veth peers reach two
or more of those joins their underlays (the fabric); a namespace with a single
link is an end host (a guest), and so is a QEMU process.
"""

from __future__ import annotations

from typing import Literal

from vnetdiag.model.topology import Topology

Role = Literal["host", "fabric", "hypervisor", "guest", "other"]

TIERS: tuple[Role, ...] = ("host", "fabric", "hypervisor", "guest", "other")
"""Left-to-right order in pictures."""

TIER_TITLE: dict[Role, str] = {"host": "host", "fabric": "fabric", "hypervisor": "hypervisors",
                               "guest": "guests", "other": "other namespaces"}

_SWITCHING = {"bridge", "vxlan", "macvtap", "macvlan", "openvswitch"}
_OVERLAY = {"vxlan", "macvtap"}


def _links(t: Topology) -> dict[int, list]:
    """Interfaces of each namespace that are links (loopback left out)."""
    out: dict[int, list] = {n.netns_inode: [] for n in t.nodes if n.type == "netns" and n.netns_inode}
    for n in t.nodes:
        if n.type == "interface" and n.name != "lo" and n.netns_inode in out:
            out[n.netns_inode].append(n)
    return out


def namespace_roles(t: Topology) -> dict[int, Role]:
    """The role of every namespace, by inode."""
    links = _links(t)
    netns_of = {n.id: n.netns_inode for n in t.nodes if n.type == "interface"}
    kinds = {ns: {i.kind for i in ifs} for ns, ifs in links.items()}
    host = {n.netns_inode for n in t.nodes if n.type == "netns" and n.attrs.get("is_host")}
    switching = {ns for ns, k in kinds.items() if k & _SWITCHING and ns not in host}
    peers: dict[int, set[int]] = {ns: set() for ns in links}
    for e in t.edges:
        if e.type != "veth-peer":
            continue
        a, b = netns_of.get(e.source), netns_of.get(e.target)
        if a in peers and b in peers and a != b:
            peers[a].add(b)
            peers[b].add(a)
    overlay = {ns for ns in switching if kinds[ns] & _OVERLAY}
    # The fabric joins hypervisors; when some namespaces carry an overlay they
    # are the hypervisors for sure, and the fabric is what joins two of them.
    anchors = overlay or switching
    fabric = {ns for ns in switching - overlay if len(peers[ns] & anchors) >= 2}
    roles: dict[int, Role] = {}
    for ns, ifs in links.items():
        if ns in host:
            roles[ns] = "host"
        elif ns in fabric:
            roles[ns] = "fabric"
        elif ns in switching:
            roles[ns] = "hypervisor"
        elif len(ifs) <= 1:
            roles[ns] = "guest"
        else:
            roles[ns] = "other"
    return roles

