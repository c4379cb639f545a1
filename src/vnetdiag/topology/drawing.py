"""The topology, and a probe's path through it, as Graphviz DOT laid out for people (pure).

Namespaces are clusters inside one cluster per role, in the order host ->
fabric -> hypervisors -> guests (topology/roles.py), left to right or top to
bottom. Dot ranks nodes along
edge directions, so every edge is written pointing away from the host: from
the lower tier to the higher one, and inside a namespace from the underlay
towards the guests (lower device -> upper device, uplink port -> bridge ->
guest ports). Edges are orthogonal. FDB entries are facts about ports, not
wires: they stay in the details, off the picture, where they would cross it.

A path (``path_dot``) is drawn with the same boxes: one cluster per namespace
in the order the packets enter them, top to bottom, the devices of a
namespace side by side, and arrows in the direction the probe's packets move.
"""

from __future__ import annotations

import json
from html import escape

from collections.abc import Collection, Sequence

from vnetdiag.model.diagnosis import PathHop
from vnetdiag.model.topology import Edge, Node, Topology
from vnetdiag.topology.details import global_addresses
from vnetdiag.topology.roles import TIER_TITLE, TIERS, namespace_roles

EDGE_STYLE = {  # DOT attributes per edge type; colours match the page's legend
    "veth-peer": 'color="#1f77b4" penwidth=2 dir=none',
    "master": 'color="#7f7f7f" style=dashed dir=none',
    "lower": 'color="#2ca02c" dir=none',
    "vxlan": 'color="#d62728" penwidth=2 style=bold dir=both constraint=false',
    "tap-owner": 'color="#9467bd" style=dotted dir=none',
    "fdb": 'color="#ff7f0e" style=dotted constraint=false',
}
EDGE_TITLE = {"veth-peer": "veth pair", "master": "bridge port", "lower": "lower / underlay device",
              "vxlan": "vxlan tunnel", "tap-owner": "tap held by a process", "fdb": "FDB entry"}


def _q(s: str) -> str:
    return json.dumps(s)


def dom_id(node_id: str) -> str:
    """A node's id in the SVG (``n-`` + id with ':' as '-'): what pages select on."""
    return "n-" + node_id.replace(":", "-")


def _shown(t: Topology) -> list[Node]:
    """Nodes worth drawing: loopback devices with nothing attached are left out."""
    linked = {e.source for e in t.edges} | {e.target for e in t.edges}
    return [n for n in t.nodes if n.type != "interface" or n.name != "lo" or n.id in linked]


def _html_label(name: str, sub: str, extra: Sequence[str] = ()) -> str:
    """A node's label: the name in bold, a grey line of facts, blue lines of addresses."""
    lines = [f"<B>{escape(name)}</B>", f"<FONT POINT-SIZE=\"9\" COLOR=\"#555555\">{escape(sub)}</FONT>"]
    lines += [f"<FONT POINT-SIZE=\"9\" COLOR=\"#0b5394\">{escape(x)}</FONT>" for x in extra]
    return "<" + "<BR/>".join(lines) + ">"


def _label(n: Node, addrs: dict[str, list[str]]) -> str:
    if n.type == "process":
        vm = n.attrs.get("vm")
        return _html_label(n.name, f"QEMU pid {n.attrs.get('pid')}" if vm else f"pid {n.attrs.get('pid')}")
    a = n.attrs
    kind = n.kind or a.get("driver") or "device"
    sub = f"{kind} · mtu {a.get('mtu')}"
    if "vni" in a:
        sub += f" · vni {a['vni']}"
    return _html_label(n.name, sub, addrs.get(n.id, [])[:3])


def _header(rankdir: str, *, ranksep_in: float = 0.55) -> list[str]:
    """Graph, node and edge defaults shared by every picture."""
    return ["digraph vnetdiag {",
            f'  graph [rankdir={rankdir}, splines=ortho, newrank=true, nodesep=0.3, ranksep={ranksep_in}, '
            'fontname="Helvetica", fontsize=11, bgcolor="white", pad=0.2];',
            '  node [shape=box, style="rounded,filled", fillcolor="white", color="#555555", '
            'fontname="Helvetica", fontsize=10, margin="0.12,0.05"];',
            '  edge [arrowsize=0.7, fontname="Helvetica", fontsize=9, fontcolor="#d62728"];']


def _ns_cluster(key: str, name: str, element_id: str, *, extra: str = "") -> str:
    """The opening line of a namespace's box."""
    label = f"<<B>{escape(name)}</B>>" if name else '""'
    return (f'subgraph cluster_ns_{key} {{ label={label}; id={_q(element_id)}; '
            f'style="rounded,filled"; fillcolor="#f4f6f9"; color="#8a94a6";{extra}')


def _tiers(t: Topology, shown: list[Node]) -> tuple[dict[str, int], dict[int, str]]:
    """Tier index of every shown node, and each namespace's role."""
    roles = namespace_roles(t)
    tier: dict[str, int] = {}
    for n in shown:
        if n.type == "process" and n.attrs.get("vm"):
            tier[n.id] = TIERS.index("guest")
        else:
            tier[n.id] = TIERS.index(roles.get(n.netns_inode, "other"))  # type: ignore[arg-type]
    return tier, roles  # type: ignore[return-value]


def _oriented(t: Topology, tier: dict[str, int]) -> list[tuple[str, str, Edge]]:
    """(tail, head, edge) with every edge pointing away from the host."""
    ns = {n.id: n.netns_inode for n in t.nodes}
    kind = {n.id: n.kind for n in t.nodes}
    peer: dict[str, str] = {}
    ports = set()
    for e in t.edges:
        if e.type == "veth-peer":
            peer[e.source], peer[e.target] = e.target, e.source
        elif e.type == "master":
            ports.add(e.source)

    def uplink(port: str) -> bool:
        p = peer.get(port)
        return kind.get(port) == "vxlan" or (p is not None and tier.get(p, 9) < tier.get(port, 9))

    out: list[tuple[str, str, Edge]] = []
    seen_tunnels: set[frozenset] = set()
    for e in t.edges:
        a, b = e.source, e.target
        if a not in tier or b not in tier:
            continue
        if e.type == "vxlan":
            pair = frozenset((a, b))
            if pair in seen_tunnels:
                continue  # both ends list the tunnel: one line, arrows both ways
            seen_tunnels.add(pair)
            out.append((a, b, e))
        elif tier[a] != tier[b] and e.type != "fdb":
            out.append((a, b, e) if tier[a] < tier[b] else (b, a, e))
        elif e.type == "master":  # a: port, b: bridge
            out.append((a, b, e) if uplink(a) else (b, a, e))
        elif e.type == "lower":  # a: upper, b: lower
            out.append((b, a, e))
        elif e.type == "veth-peer" and ns.get(a) == ns.get(b):
            out.append((a, b, e) if a in ports else (b, a, e))
        elif e.type == "tap-owner":  # a: process, b: device
            out.append((b, a, e) if tier[b] < tier[a] else (a, b, e))
        else:
            out.append((a, b, e))
    return out


def dot(t: Topology, *, fdb_edges: bool = False, rankdir: str = "LR") -> str:
    """The DOT text; ``fdb_edges`` adds the FDB entries as dotted lines (they cross the picture).
    ``rankdir``: LR draws the tiers as columns, TB as rows (views.html picks the
    one that fits a page better)."""
    shown = _shown(t)
    tier, roles = _tiers(t, shown)
    addrs = global_addresses(t)
    out = _header(rankdir)
    netns_nodes = [n for n in shown if n.type == "netns"]
    for role in TIERS:
        members = [n for n in netns_nodes if roles.get(n.netns_inode, "other") == role]
        vms = [n for n in shown if role == "guest" and n.type == "process" and n.attrs.get("vm")]
        if not members and not vms:
            continue
        out.append(f'  subgraph cluster_tier_{role} {{ label={_q(TIER_TITLE[role])}; id={_q("tier-" + role)}; '
                   f'style="dashed"; color="#bbbbbb"; fontcolor="#777777"; labeljust=l;')
        for ns in sorted(members, key=lambda n: n.name):
            # Top to bottom, edges enter the boxes below the fabric from above (the
            # underlay, the guests' links): their names go below, off the edges' way.
            below = " labelloc=b;" if rankdir == "TB" and role not in ("host", "fabric") else ""
            out.append("    " + _ns_cluster(str(ns.netns_inode), ns.name, dom_id(ns.id), extra=below))
            for n in shown:
                if n.type in ("interface", "process") and n.netns_inode == ns.netns_inode and not n.attrs.get("vm"):
                    cls = "process" if n.type == "process" else "interface"
                    style = ' fillcolor="#efe6f7" color="#9467bd"' if n.type == "process" else ""
                    out.append(f"      {_q(n.id)} [id={_q(dom_id(n.id))}, class={_q(cls)}, "
                               f"label={_label(n, addrs)}{style}];")
            out.append("    }")
        for vm in vms:
            out.append(f'    subgraph cluster_vm_{vm.attrs.get("pid")} {{ label=<<B>VM {escape(vm.name)}</B>>; '
                       f'style="rounded,filled"; fillcolor="#f7f1fb"; color="#9467bd";')
            out.append(f"      {_q(vm.id)} [id={_q(dom_id(vm.id))}, class=\"process\", label={_label(vm, addrs)}, "
                       f'fillcolor="#efe6f7" color="#9467bd"];')
            out.append("    }")
        out.append("  }")
    # Tap holders outside every drawn namespace (e.g. in an unlisted host).
    inside = {n.netns_inode for n in netns_nodes}
    for p in shown:
        if p.type == "process" and not p.attrs.get("vm") and p.netns_inode not in inside:
            out.append(f"  {_q(p.id)} [id={_q(dom_id(p.id))}, class=\"process\", label={_label(p, addrs)}, "
                       f'fillcolor="#efe6f7" color="#9467bd"];')
    for tail, head, e in _oriented(t, tier):
        if e.type == "fdb" and not fdb_edges:
            continue
        # Top to bottom the tunnel joins two nodes of one rank, where dot puts its
        # label over them; both ends name the VNI anyway.
        label = f", xlabel={_q('VNI ' + str(e.attrs.get('vni')))}" if e.type == "vxlan" and rankdir == "LR" else ""
        out.append(f"  {_q(tail)} -> {_q(head)} [{EDGE_STYLE[e.type]}, class={_q('edge ' + e.type)}{label}];")
    out.append("}")
    return "\n".join(out) + "\n"


def hop_id(direction: str, index: int) -> str:
    """A path hop's node id in the SVG: what pages and tests select on."""
    return f"hop-{direction}-{index}"


def path_dot(hops: Sequence[PathHop], *, culprits: Collection[tuple[int, str]] = ()) -> str:
    """One direction of a path: the hops in order (all of one ``direction``),
    boxed by namespace, arrows from each device to the next; hops whose
    (netns inode, device) is in ``culprits`` are drawn red."""
    # Room between the rows for the arrow from one row's end to the next row's start.
    out = _header("TB", ranksep_in=0.8)
    order: list[int] = []  # namespaces in the order the packets enter them
    for h in hops:
        if h.netns_inode not in order:
            order.append(h.netns_inode)
    # A namespace's name heads its row, as a node of its own left of the devices:
    # a box's title would sit where the arrows from the row above come in.
    titles = [f"ns-{hops[0].direction}-{k}" for k in range(len(order))]
    for k, inode in enumerate(order):
        mine = [(i, h) for i, h in enumerate(hops) if h.netns_inode == inode]
        out.append("  " + _ns_cluster(f"{k}", "", f"path-ns-{mine[0][1].direction}-{k}"))
        out.append(f"    {_q(titles[k])} [id={_q(titles[k])}, class=\"ns-title\", shape=plaintext, style=\"\", "
                   f"label=<<B>{escape(mine[0][1].netns)}</B>>];")
        for i, h in mine:
            culprit = (h.netns_inode, h.device) in culprits
            style = ', fillcolor="#ffe3e0", color="#c62828", penwidth=2' if culprit else ""
            sub = f"#{i + 1} · {h.kind or 'device'}" + (f" · mtu {h.mtu}" if h.mtu else "")
            out.append(f"    {_q(hop_id(h.direction, i))} [id={_q(hop_id(h.direction, i))}, "
                       f"class={_q('hop culprit' if culprit else 'hop')}, tooltip={_q(h.netns + '/' + h.device)}, "
                       f"label={_html_label(h.device, sub)}{style}];")
        # The devices of one namespace side by side, after its name, so the picture grows downwards.
        row = [titles[k]] + [hop_id(h.direction, i) for i, h in mine]
        out.append("    { rank=same; " + " ".join(map(_q, row)) + " }")
        out.append(f"    {_q(titles[k])} -> {_q(row[1])} [style=invis];")
        out.append("  }")
    # Rows start at the left, as lines of text do: an invisible, heavy edge
    # joins the names of successive namespaces, and the arrow from a row's end
    # to the next row's start does not pull the next row sideways.
    for a, b in zip(titles, titles[1:]):
        out.append(f"  {_q(a)} -> {_q(b)} [style=invis, weight=100];")
    for i in range(len(hops) - 1):
        across = hops[i].netns_inode != hops[i + 1].netns_inode
        out.append(f"  {_q(hop_id(hops[i].direction, i))} -> {_q(hop_id(hops[i + 1].direction, i + 1))} "
                   f'[color="#1f77b4", penwidth=2, arrowsize=0.9, class="step"{", weight=0" if across else ""}];')
    out.append("}")
    return "\n".join(out) + "\n"


visible_nodes = _shown
"""The nodes the picture draws (tests check the page against it)."""
