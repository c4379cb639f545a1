"""An MTU on the path smaller than the endpoints' (configuration, read from the
links): frames above it cannot cross. Losses it explains (drops just before
the hop in its namespace or on its neighbours, a vxlan's underlay included,
fragmentation failures and too-big counters there) fold into it: the verdict
is "MTU" with the hop, counted as the loss's count."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

name = "mtu"
source = "config"
weight = 0.35
confirm = ("ping -M do -s {size} across the path fails while smaller sizes pass; "
           "raising {device}'s MTU must fix it")


def candidates(ctx: Context, out: Candidates) -> None:
    path = ctx.bundle.path
    ends = [h.mtu for h in (path[:1] + path[-1:]) if h.mtu]
    if not ends:
        return
    need = max(ends)
    for hop in path:
        # A bridge takes the smallest MTU of its ports: the port is the cause, not the bridge.
        inherited = hop.kind == "bridge" and any(
            h.netns_inode == hop.netns_inode and h.kind != "bridge" and h.mtu == hop.mtu for h in path)
        if hop.mtu and hop.mtu < need and not inherited:
            c = out.at(hop.netns_inode, hop.device, "mtu-mismatch", direction="tx", config=True,
                       reason=f"mtu {hop.mtu} < {need}")
            if not any(e.source == "config" for e in c.evidence):
                from vnetdiag.model.diagnosis import Evidence

                c.evidence.append(Evidence(source="config", text=(
                    f"{hop.device} in {ctx.name(hop.netns_inode)} has MTU {hop.mtu}, the endpoints {need}: "
                    f"frames over {hop.mtu} bytes cannot cross it")))


def merge(ctx: Context, out: Candidates) -> None:
    path = ctx.bundle.path
    for key in [k for k, c in out.items() if c.cause == "mtu-mismatch" and c.config]:
        ns, dev, _ = key
        i = next((n for n, h in enumerate(path) if (h.netns_inode, h.device) == (ns, dev)), len(path))
        # Victims: drops just before this hop in its namespace, on its neighbours
        # (a vxlan's underlay, a veth's peer), and its namespace's MTU counters.
        near = ({(ns, dev)} | {(h.netns_inode, h.device) for h in path[:i] if h.netns_inode == ns}
                | ctx.neighbours(ns, dev))
        for k in [k for k, c in out.items() if k != key and (
                ((c.netns, c.device) in near and c.cause == "drop")
                or (c.netns == ns and c.cause in ("mtu-mismatch", "fragmentation") and not c.config))]:
            out.merge(key, k)
