"""Topology as a result document, a text tree and Graphviz DOT (pure functions)."""

from __future__ import annotations

import json
from dataclasses import asdict

from vnetdiag.model.topology import Topology

SCHEMA = "vnetdiag.topology/1"
EDGE_STYLE = {  # DOT style per edge type
    "veth-peer": 'color="#1f77b4" penwidth=2 dir=none',
    "master": 'color="#7f7f7f" style=dashed',
    "lower": 'color="#2ca02c"',
    "vxlan": 'color="#d62728" penwidth=2 style=bold',
    "tap-owner": 'color="#9467bd" style=dotted dir=none',
    "fdb": 'color="#ff7f0e" style=dotted constraint=false',
}


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
    names = _names(t)
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
                         f"mtu {a.get('mtu')} {a.get('operstate')}{extra}")
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


def _q(s: str) -> str:
    return json.dumps(s)


def dot(t: Topology) -> str:
    """Graphviz: one cluster per namespace, processes outside."""
    out = ["digraph vnetdiag {", "  rankdir=LR; compound=true; node [shape=box, fontname=Helvetica, fontsize=10];"]
    for k, ns in enumerate(n for n in t.nodes if n.type == "netns"):
        out.append(f"  subgraph cluster_{k} {{ label={_q(ns.name)}; style=rounded; color=\"#999999\";")
        for i in t.nodes:
            if i.type == "interface" and i.netns_inode == ns.netns_inode:
                label = f"{i.name}\\n{i.kind or i.attrs.get('driver') or ''}"
                if "vni" in i.attrs:
                    label += f" vni {i.attrs['vni']}"
                out.append(f"    {_q(i.id)} [label=\"{label}\"];")
        out.append("  }")
    for p in t.nodes:
        if p.type == "process":
            out.append(f"  {_q(p.id)} [label={_q(p.name)}, shape=ellipse, color=\"#9467bd\"];")
    for e in t.edges:
        label = f" label={_q(str(e.attrs.get('vni', '')))}" if e.type == "vxlan" else ""
        out.append(f"  {_q(e.source)} -> {_q(e.target)} [{EDGE_STYLE[e.type]}{label}];")
    out.append("}")
    return "\n".join(out) + "\n"


def html(t: Topology) -> str:
    """A self-contained interactive page: the document inlined, no network access."""
    from importlib import resources

    template = resources.files("vnetdiag.report").joinpath("templates/topology.html").read_text()
    data = json.dumps(document(t)).replace("</", "<\\/")
    return template.replace("__TOPOLOGY_JSON__", data)
