"""What a person reads about one node of the topology: labelled fields (pure).

Pages show these rows as a table; names are labels (Namespace.label and
"namespace/device"), never inode ids, which appear only as the field
"namespace inode" where someone may need to pass it to a command.
"""

from __future__ import annotations

from vnetdiag.model.topology import Topology
from vnetdiag.topology.roles import TIER_TITLE, namespace_roles

Field = tuple[str, str]

_SCOPE = {0: "", 253: " (link)", 254: " (host)"}


def addresses(t: Topology) -> dict[str, list[str]]:
    """Interface id -> "ADDRESS/PREFIX" strings, global ones first."""
    out: dict[str, list[tuple[int, str]]] = {}
    for a in t.addresses:
        out.setdefault(a.ref.id, []).append((a.scope, f"{a.address}/{a.prefixlen}{_SCOPE.get(a.scope, '')}"))
    return {k: [s for _, s in sorted(v, key=lambda x: x[0])] for k, v in out.items()}


def global_addresses(t: Topology) -> dict[str, list[str]]:
    """Only the addresses worth drawing on a node (no link-local, no loopback)."""
    out: dict[str, list[str]] = {}
    for a in t.addresses:
        if a.scope == 0:
            out.setdefault(a.ref.id, []).append(f"{a.address}/{a.prefixlen}")
    return out


def names(t: Topology) -> dict[str, str]:
    """Node id -> the label people read: "namespace/device", a namespace's label, a process name."""
    ns = {n.inode: n.label for n in t.namespaces}
    ns.update({n.netns_inode: n.name for n in t.nodes if n.type == "netns" and n.netns_inode not in ns})
    out = {}
    for n in t.nodes:
        if n.type == "interface":
            out[n.id] = f"{ns.get(n.netns_inode, f'netns:{n.netns_inode}')}/{n.name}"
        else:
            out[n.id] = n.name
    return out


def fields(t: Topology) -> dict[str, list[Field]]:
    """Node id -> [(label, value), ...] for every node."""
    label = names(t)
    ns_label = {n.netns_inode: n.name for n in t.nodes if n.type == "netns"}
    ns_label.update({n.inode: n.label for n in t.namespaces})
    roles = namespace_roles(t)
    addrs = addresses(t)
    related: dict[str, list[tuple[str, str]]] = {}

    def rel(node: str, what: str, other: str) -> None:
        related.setdefault(node, []).append((what, label.get(other, other)))

    for e in t.edges:
        if e.type == "veth-peer":
            rel(e.source, "peer", e.target)
            rel(e.target, "peer", e.source)
        elif e.type == "master":
            rel(e.source, "bridge", e.target)
            rel(e.target, "port", e.source)
        elif e.type == "lower":
            rel(e.source, "underlay" if e.attrs.get("underlay") else "lower device", e.target)
            rel(e.target, "upper device", e.source)
        elif e.type == "vxlan":
            rel(e.source, f"vxlan VNI {e.attrs.get('vni')} to", e.target)
        elif e.type == "tap-owner":
            rel(e.source, "holds", e.target)
            rel(e.target, "held by", e.source)
        elif e.type == "fdb":
            rel(e.source, f"learned MAC {e.attrs.get('mac')} of", e.target)
    out: dict[str, list[Field]] = {}
    for n in t.nodes:
        rows: list[Field] = []
        if n.type == "netns":
            mine = [i.name for i in t.nodes if i.type == "interface" and i.netns_inode == n.netns_inode]
            rows += [("namespace", n.name), ("role", TIER_TITLE.get(roles.get(n.netns_inode, "other"), "")),
                     ("namespace inode", str(n.netns_inode)), ("interfaces", ", ".join(mine) or "none")]
            if n.attrs.get("pids"):
                rows.append(("processes", " ".join(map(str, n.attrs["pids"][:8]))))
        elif n.type == "interface":
            a = n.attrs
            rows += [("device", n.name), ("namespace", ns_label.get(n.netns_inode, f"netns:{n.netns_inode}")),
                     ("kind", n.kind or "device"), ("driver", a.get("driver") or ""),
                     ("MAC", a.get("mac") or ""), ("MTU", str(a.get("mtu") or "")),
                     ("state", a.get("operstate") or ""),
                     ("addresses", ", ".join(addrs.get(n.id, [])) or "none")]
            if "vni" in a:
                rows += [("VNI", str(a["vni"])), ("local VTEP", a.get("local") or "any"),
                         ("UDP port", str(a.get("port") or ""))]
            if a.get("tun_type"):
                rows.append(("tun type", a["tun_type"]))
            if a.get("mode"):
                rows.append(("mode", a["mode"]))
        else:
            a = n.attrs
            rows += [("process", n.name), ("pid", str(a.get("pid", ""))), ("command", a.get("comm", ""))]
            if n.netns_inode:
                rows.append(("lives in", ns_label.get(n.netns_inode, f"netns:{n.netns_inode}")))
            for k, nic in enumerate((a.get("vm") or {}).get("nics", ())):
                host = label.get(nic.get("host_id") or "", nic.get("host_device") or nic.get("backend") or "")
                rows.append((f"NIC {k}", f"{nic.get('model')} {nic.get('mac') or '?'}, {nic.get('queues')} queues"
                                         f"{', vhost' if nic.get('vhost') else ''}, behind {host}"))
            if a.get("vm"):
                rows.append(("inside", "not observable (a VM)"))
        rows += related.get(n.id, [])
        out[n.id] = rows
    return out
