"""The probe's own lost packets (the seeds' method): eBPF drop records whose
flow, outer or inner (vxlan), is one of the probe's, placed where each died.

A packet is the probe's when its transport and its two addresses are the
probe's and the server's port is one end: requests go client -> server:port
(forward), responses come back (reverse). Drops the receiving transport makes
on purpose (a duplicate segment, a socket purging its queue on close) are
consequences of an earlier loss, not places where the probe lost packets.
"""

from __future__ import annotations

import ipaddress

from vnetdiag.analyze.drops import location_function
from vnetdiag.analyze.evidence.base import Candidates, Context
from vnetdiag.model.bundle import ProbeFlows
from vnetdiag.model.diagnosis import Cause
from vnetdiag.model.drops import Flow, PacketDrop

name = "packets"
source = "trace"
weight = 0.6
confirm = ("vnetdiag drops --filter 'host {client} and host {server} and port {port}' during the probe: "
           "each of its lost packets shows here, and clearing the cause makes them stop")

TRANSPORT_PREFIXES = ("TCP_", "SOCKET_", "QUEUE_PURGE", "NO_SOCKET")


def is_transport_consequence(reason: str) -> bool:
    return reason.startswith(TRANSPORT_PREFIXES)


def drop_cause(reason: str | None) -> Cause:
    """A packet that died waiting for its link-layer address (the kernel's
    NEIGH_* reasons) was not refused by its device: the address never came.
    That is a cause of its own, kept apart from the device's other drops, which
    evidence/neighbour.py folds into what kept the address from coming."""
    return "no-neighbour" if reason and reason.startswith("NEIGH_") else "drop"


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def direction(p: PacketDrop, probe: ProbeFlows) -> str | None:
    """'forward' (client -> server), 'reverse', or None: not the probe's."""
    flows: tuple[Flow | None, ...] = (p.inner, p.outer)
    for f in flows:
        if f is None or f.proto != probe.proto:
            continue
        if f.dport == probe.server_port and _same(f.src, probe.client) and _same(f.dst, probe.server):
            return "forward"
        if f.sport == probe.server_port and _same(f.src, probe.server) and _same(f.dst, probe.client):
            return "reverse"
    return None


def probe_packets(ctx: Context) -> list[tuple[PacketDrop, str]]:
    b = ctx.bundle
    if not ctx.flows_known:
        return []
    return [(p, d) for p in b.drops.packets if (d := direction(p, b.probe)) is not None]


def device_of(ctx: Context, p: PacketDrop) -> str | None:
    if not p.ifindex:
        return None
    from vnetdiag.model.namespaces import IfRef

    i = ctx.interfaces.get(IfRef(netns_inode=p.netns_inode, ifindex=p.ifindex))
    return i.name if i is not None else (p.device or None)


def candidates(ctx: Context, out: Candidates) -> None:
    mine = probe_packets(ctx)
    groups: dict[tuple, list[tuple[PacketDrop, str]]] = {}
    for p, d in mine:
        if is_transport_consequence(p.reason):
            continue  # noted with the tallies (traced.py)
        groups.setdefault((p.netns_inode or None, device_of(ctx, p), p.reason), []).append((p, d))
    for (ns, dev, reason), got in groups.items():
        c = out.at(ns, dev, drop_cause(reason))
        c.probe_packets += len(got)
        for _p, d in got:
            c.directions[d] = c.directions.get(d, 0) + 1
        c.reason = reason if c.reason is None or not reason.startswith("NOT_SPEC") else c.reason
        funcs = sorted({location_function(p.location) for p, _ in got})
        c.locations.update(funcs)
        c.times_ns.extend(sorted(p.ts_ns for p, _ in got))
        ways = ", ".join(f"{n} {d}" for d, n in sorted(c.directions.items()))
        syn = sum(1 for p, _ in got if p.outer is not None and p.outer.tcp_flags & 0x02
                  or p.inner is not None and p.inner.tcp_flags & 0x02)
        rings = [p.ring for p, _ in got if p.ring is not None]
        text = (f"{len(got)} of the probe's packets ({ways}{f'; {syn} SYN' if syn else ''}) dropped at "
                f"{ctx.where(c)}: {reason} in {', '.join(funcs)}")
        if rings:
            full = sum(1 for r in rings if r.slot_busy)
            worst = max(rings, key=lambda r: r.occupied_entries)
            text += (f"; ring {worst.occupied_entries}/{worst.size_entries} at the worst, "
                     f"really full at {full} of {len(rings)} drops")
        c.evidence.append(_evidence(text, len(got)))

def _evidence(text: str, n: int):
    from vnetdiag.model.diagnosis import Evidence

    return Evidence(source=source, text=text, count=n)


def merge(ctx: Context, out: Candidates) -> None:
    pass
