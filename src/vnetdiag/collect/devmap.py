"""Which namespaces have a device of a given name: the map trace events need.

Trace events name devices but not namespaces. The map is built from the
counters issue's inventory (collect/snapshot.py: every namespace's links over
rtnetlink, veth peers resolved to (namespace inode, ifindex)), reduced to what
the path analyses use: DeviceRefs keyed by name.
"""

from __future__ import annotations

from collections.abc import Iterable

from vnetdiag.model.tracing import DeviceRef
from vnetdiag.system.netns import matcher


def _matcher(patterns: Iterable[str] | None):
    return matcher(list(patterns or ()))


def device_map(patterns: Iterable[str] | None = None) -> dict[str, tuple[DeviceRef, ...]]:
    """{device name: every DeviceRef of that name} in the namespaces whose label
    or other form (``system.netns.matcher``) matches ``patterns`` (all if None)."""
    from vnetdiag.collect.snapshot import snapshot

    snap = snapshot(only=_matcher(patterns))
    labels = {ns.inode: ns.label for ns in snap.namespaces}
    by_ref = {ic.interface.ref: ic.interface for ic in snap.interfaces}
    out: dict[str, list[DeviceRef]] = {}
    for ic in snap.interfaces:
        iface = ic.interface
        netns = labels[iface.ref.netns_inode]
        peer_ns = peer_name = None
        if iface.kind == "veth" and iface.link is not None:
            peer = by_ref.get(iface.link)
            peer_ns = labels.get(iface.link.netns_inode)
            peer_name = peer.name if peer else None
        master = ""
        if iface.master_ifindex:
            m = by_ref.get(type(iface.ref)(netns_inode=iface.ref.netns_inode, ifindex=iface.master_ifindex))
            master = m.name if m else ""
        ref = DeviceRef(netns=netns, name=iface.name, ifindex=iface.ref.ifindex, kind=iface.kind or "",
                        master=master, peer_netns=peer_ns, peer_name=peer_name)
        out.setdefault(ref.name, []).append(ref)
    return {k: tuple(v) for k, v in out.items()}
