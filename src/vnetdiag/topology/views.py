"""Topology as a result document, a text tree and Graphviz DOT (pure functions)."""

from __future__ import annotations

import json
from dataclasses import asdict

from vnetdiag.model.topology import Topology

SCHEMA = "vnetdiag.topology/1"


def document(t: Topology) -> dict:
    return {
        "schema": SCHEMA,
        "taken_unix_s": t.taken_unix_s,
        "nodes": [{"id": n.id, "type": n.type, "netns_inode": n.netns_inode, "name": n.name, "kind": n.kind,
                   **{k: v for k, v in n.attrs.items() if k not in ("id", "type", "name", "kind")}}
                  for n in t.nodes],
        "edges": [{"source": e.source, "target": e.target, "type": e.type, **e.attrs} for e in t.edges],
        "fdb": [{"device": e.device.id, "bridge": (f"{e.device.netns_inode}:{e.bridge_ifindex}"
                                                   if e.bridge_ifindex else None),
                 **{k: v for k, v in asdict(e).items() if k not in ("device", "bridge_ifindex")}} for e in t.fdb],
        "addresses": [{"id": a.ref.id, "address": a.address, "prefixlen": a.prefixlen, "scope": a.scope}
                      for a in t.addresses],
        "problems": list(t.problems),
    }


def _names(t: Topology) -> dict[str, str]:
    ns = {n.netns_inode: n.name for n in t.nodes if n.type == "netns"}
    out = {}
    for n in t.nodes:
        if n.type == "interface":
            out[n.id] = f"{ns.get(n.netns_inode, n.netns_inode)}/{n.name}"
        else:
            out[n.id] = n.name
    return out


def tree_lines(t: Topology) -> list[str]:
    """namespaces -> interfaces -> what each one connects to."""
    from vnetdiag.topology.details import addresses

    names = _names(t)
    addrs = addresses(t)
    by_src: dict[str, list] = {}
    for e in t.edges:
        by_src.setdefault(e.source, []).append(e)
        if e.type in ("veth-peer", "tap-owner"):
            by_src.setdefault(e.target, []).append(e)
    lines: list[str] = []
    ifaces = [n for n in t.nodes if n.type == "interface"]
    for ns in (n for n in t.nodes if n.type == "netns"):
        mine = [i for i in ifaces if i.netns_inode == ns.netns_inode]
        pids = ns.attrs.get("pids") or []
        lines.append(f"{ns.name}  (netns {ns.netns_inode}" + (f", pids {' '.join(map(str, pids[:4]))}" if pids else "")
                     + f", {len(mine)} interfaces)")
        for k, i in enumerate(mine):
            last = k == len(mine) - 1
            a = i.attrs
            extra = f" vni {a['vni']} local {a.get('local') or '*'}" if "vni" in a else ""
            lines.append(f"{'└─' if last else '├─'} {i.name} [{i.kind or a.get('driver') or 'device'}] "
                         f"mtu {a.get('mtu')} {a.get('operstate')}{extra}"
                         + (f"  {' '.join(addrs[i.id])}" if i.id in addrs else ""))
            pre = "   " if last else "│  "
            for e in by_src.get(i.id, ()):
                other = e.target if e.source == i.id else e.source
                if e.type == "veth-peer":
                    text = f"veth peer {names.get(other, other)}"
                elif e.type == "master":
                    text = f"port of {names.get(other, other)}"
                elif e.type == "lower":
                    text = f"{'underlay' if e.attrs.get('underlay') else 'lower device'} {names.get(other, other)}"
                elif e.type == "vxlan":
                    text = f"vxlan VNI {e.attrs.get('vni')} to {names.get(other, other)} (VTEP {e.attrs.get('remote')})"
                elif e.type == "tap-owner":
                    text = f"character device held by {names.get(other, other)}"
                else:
                    text = f"FDB: {e.attrs.get('mac')} (owned by {names.get(other, other)}) learned here"
                lines.append(f"{pre}   {text}")
    procs = [n for n in t.nodes if n.type == "process" and "vm" not in n.attrs]
    if procs:
        lines.append("processes holding tap/macvtap devices")
        for p in procs:
            held = [names.get(e.target, e.target) for e in t.edges if e.source == p.id and e.type == "tap-owner"]
            lines.append(f"   {p.name}: {', '.join(held)}")
    vms = [n for n in t.nodes if n.type == "process" and "vm" in n.attrs]
    if vms:
        lines.append("virtual machines (QEMU; inside not observable)")
        for v in vms:
            lines.append(f"   {v.name} (pid {v.attrs['pid']})")
            for nic in v.attrs["vm"]["nics"]:
                host = names.get(nic["host_id"], nic["host_device"]) if nic["host_device"] else nic["backend"]
                lines.append(f"      {nic['model']} {nic['mac'] or '?'} queues {nic['queues']}"
                             f"{' vhost' if nic['vhost'] else ''} <- {nic['host_kind'] or nic['backend']} {host}")
    return lines


def dot(t: Topology, *, rankdir: str = "LR") -> str:
    """Graphviz DOT: namespaces grouped by role (topology/drawing.py)."""
    from vnetdiag.topology.drawing import dot as draw

    return draw(t, rankdir=rankdir)


PAGE_WIDTH_PT = 760.0
"""The picture's share of a common 1400-px window, in points (1 pt = 4/3 px)."""


def fitting_layout(t: Topology) -> str:
    """dot's SVG, tiers left to right or top to bottom: whichever is drawn
    larger when fitted to the page's width (ties: left to right). A few wide
    hypervisors read better in rows, many guests in columns."""
    from vnetdiag.system import graphviz

    best, best_scale = "", 0.0
    for rankdir in ("LR", "TB"):
        svg = graphviz.svg(dot(t, rankdir=rankdir))
        scale = min(1.0, PAGE_WIDTH_PT / max(graphviz.width_pt(svg), 1.0))
        if scale > best_scale + 0.05:
            best, best_scale = svg, scale
    return best


def page_view(t: Topology) -> dict:
    """What the page's script reads besides the document: labelled fields,
    labels, SVG ids and roles per node (so the page computes nothing of its own)."""
    from vnetdiag.topology import drawing
    from vnetdiag.topology.details import fields, global_addresses, names
    from vnetdiag.topology.roles import TIERS, namespace_roles

    roles = namespace_roles(t)
    addrs = global_addresses(t)
    shown = drawing._shown(t)
    caption = {}
    for n in shown:
        if n.type == "interface":
            caption[n.id] = [f"{n.name}  {n.kind or n.attrs.get('driver') or ''} mtu {n.attrs.get('mtu')}",
                             *addrs.get(n.id, [])[:2]]
        else:
            caption[n.id] = [n.name]
    return {"fields": fields(t), "names": names(t), "dom": {n.id: drawing.dom_id(n.id) for n in shown},
            "roles": {n.id: roles.get(n.netns_inode, "other") for n in t.nodes if n.type == "netns"},
            "tiers": list(TIERS), "caption": caption, "edge_titles": drawing.EDGE_TITLE}


def html(t: Topology, *, layout: str | None = None) -> str:
    """A self-contained offline page: Graphviz's layout of dot(t) inlined as SVG
    with the document and readable details. ``layout``: the SVG to use; by
    default dot is run now, and without Graphviz the page says so and draws
    its simple fallback layout in the browser."""
    from importlib import resources

    from vnetdiag.errors import MissingFeatureError
    from vnetdiag.system import graphviz

    note = ""
    if layout is None:
        try:
            layout = fitting_layout(t)
        except MissingFeatureError:
            layout = ""
            note = ('<p class="note">Graphviz (<code>dot</code>) is not installed, so this page uses vnetdiag\'s '
                    "simple fallback layout. For the grouped layout: <code>apt-get install graphviz</code>.</p>")
    template = resources.files("vnetdiag.report").joinpath("templates/topology.html").read_text()
    data = json.dumps(document(t)).replace("</", "<\\/")
    view = json.dumps(page_view(t)).replace("</", "<\\/")
    return (template.replace("__LAYOUT_NOTE__", note).replace("__TOPOLOGY_SVG__", graphviz.inline(layout) if layout else "")
            .replace("__FIELDS_JSON__", view).replace("__TOPOLOGY_JSON__", data))
