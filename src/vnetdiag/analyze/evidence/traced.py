"""Drops the kernel traced, by place: the eBPF backend's in-kernel counts (exact
namespace and interface; what is not the probe's is background), or the
tracefs backend's drops (device placed by name; no flows, so only what cannot
be the probe's is set aside).

Merges: a drop traced on a lower device is the one counted by the device above
it (a macvtap's drops are traced on its NIC: the last device that *received*
the packet); a traced drop and a counter in the same namespace with the same
count are the same packets seen twice.
"""

from __future__ import annotations

import ipaddress

from vnetdiag.analyze.evidence.base import Candidates, Context
from vnetdiag.analyze.evidence.packets import drop_cause, is_transport_consequence, probe_packets
from vnetdiag.analyze.drops import location_function
from vnetdiag.model.namespaces import IfRef

name = "trace"
source = "trace"
weight = 0.45
confirm = "vnetdiag drops --device {device}: the drops continue while the symptom does"

# Kernel functions of another address family or of multicast/ARP handling: with
# no headers (tracefs), a drop there cannot be an IPv4 unicast probe's packet.
_NOT_IPV4_UNICAST = ("ip6", "ipv6", "icmp6", "icmpv6", "ndisc", "mld", "igmp6", "addrconf", "udpv6", "rawv6",
                     "tcp_v6", "ip_mc_", "igmp", "arp")


def _cannot_be_probe(function: str, ctx: Context) -> bool:
    probe = ctx.bundle.probe
    if probe is None:
        return False
    try:
        v4 = ipaddress.ip_address(probe.server).version == 4
    except ValueError:
        return False
    return v4 and function.startswith(_NOT_IPV4_UNICAST)


def candidates(ctx: Context, out: Candidates) -> None:
    b = ctx.bundle
    if b.drops is not None and b.drops.backend == "ebpf":
        _from_tallies(ctx, out)
    elif b.trace is not None:
        _from_tracefs(ctx, out)


def _from_tallies(ctx: Context, out: Candidates) -> None:
    mine: dict[tuple, int] = {}
    for p, _d in probe_packets(ctx):
        k = (p.netns_inode, p.ifindex, p.reason, location_function(p.location))
        mine[k] = mine.get(k, 0) + 1
    consequences: dict[str, int] = {}
    for t in ctx.bundle.drops.tallies:
        if is_transport_consequence(t.reason):
            consequences[t.reason] = consequences.get(t.reason, 0) + t.count
            continue
        ns = t.netns_inode or None
        dev = None
        if t.ifindex:
            i = ctx.interfaces.get(IfRef(netns_inode=t.netns_inode, ifindex=t.ifindex))
            dev = i.name if i is not None else (t.device or None)
        c = out.at(ns, dev, drop_cause(t.reason))
        probe = mine.get((t.netns_inode, t.ifindex, t.reason, t.location), 0)
        c.background += max(t.count - probe, 0)
        c.locations.add(t.location)
        if c.reason is None or (t.count > c.counts.get(name, 0) and probe):
            c.reason = t.reason
        c.add(name, c.counts.get(name, 0) + t.count, source,
              f"{t.count} x skb:kfree_skb {t.reason} at {t.location} on {ctx.where(c)}"
              + (f" ({probe} the probe's, {t.count - probe} other traffic)" if ctx.bundle.probe else ""))
    _consequence_note(ctx, consequences)


def _from_tracefs(ctx: Context, out: Candidates) -> None:
    inodes = {lbl: ino for ino, lbl in ctx.labels.items()}
    consequences: dict[str, int] = {}
    set_aside = 0
    for d in ctx.bundle.trace.drops:
        if is_transport_consequence(d.reason):
            consequences[d.reason] = consequences.get(d.reason, 0) + d.count
            continue
        if _cannot_be_probe(d.location, ctx):
            set_aside += d.count
            continue
        ns = inodes.get(d.netns) if d.netns is not None else None
        ambiguous = tuple(inodes[a] for a in d.ambiguous if a in inodes)
        inferred = False
        if ns is None and ambiguous:
            on = [a for a in ambiguous if (a, d.device) in ctx.path_keys]
            ns, inferred = (on[0], True) if len(on) == 1 else (None, False)
        c = out.at(ns, d.device, drop_cause(d.reason))
        if ns is None:
            c.ambiguous = ambiguous
        c.locations.add(d.location)
        c.times_ns.extend(d.times_ns)
        if inferred:
            c.inferred = True
            c.add(name, 0, source, f"the name {d.device} exists in {len(ambiguous)} namespaces; "
                                   f"{ctx.name(ns)} is assumed because it is the one on the path")
        if c.reason is None or (d.reason != "NOT_SPECIFIED" and c.reason.endswith(("dropped", "errors", "drops"))):
            c.reason = d.reason
        c.add(name, c.counts.get(name, 0) + d.count, source,
              f"{d.count} x skb:kfree_skb reason {d.reason} at {d.location} after {ctx.where(c)}")
    if set_aside:
        ctx.notes.append(f"{set_aside} traced drops in IPv6, multicast or ARP code cannot be the probe's "
                         "IPv4 packets and were left out (tracefs sees no headers: drops are placed by device only)")
    _consequence_note(ctx, consequences)


def _consequence_note(ctx: Context, consequences: dict[str, int]) -> None:
    if consequences:
        listed = ", ".join(f"{n} {r}" for r, n in sorted(consequences.items(), key=lambda kv: -kv[1]))
        ctx.notes.append(f"transport-layer discards at the endpoints (consequences of loss, not causes): {listed}")


def merge(ctx: Context, out: Candidates) -> None:
    _merge_stacked(ctx, out)
    _merge_equal_counts(out)


def _merge_stacked(ctx: Context, out: Candidates) -> None:
    """Traced drops on a lower device merge into the counter of the device above it."""
    for i in ctx.interfaces.values():
        if i.link is None or i.link.netns_inode != i.ref.netns_inode or i.kind == "veth":
            continue
        low = ctx.interfaces.get(i.link)
        if low is None:
            continue
        ck, tk = (i.ref.netns_inode, i.name, "drop"), (i.ref.netns_inode, low.name, "drop")
        c, t = out.get(ck), out.get(tk)
        if c and t and c.counts.get("counter") and name in t.counts and name not in c.counts:
            out.merge(ck, tk, reason=True)


def _merge_equal_counts(out: Candidates) -> None:
    """A traced drop and a counter in the same namespace with the same count (within
    10 %, for a tracer that lost events) are the same packets: the trace names the
    last device that *received* the packet, the counter the one that *counted* it."""
    for tk in [k for k, c in out.items() if name in c.counts and "counter" not in c.counts and c.cause == "drop"
               and not c.probe_packets]:
        t = out.get(tk)
        if t is None:
            continue
        spaces = {t.netns} if t.netns else set(t.ambiguous)
        n = t.counts[name]
        match = [k for k, c in out.items() if k != tk and name not in c.counts and c.counts.get("counter")
                 and c.netns in spaces and c.cause == "drop" and abs(c.counts["counter"] - n) <= 0.1 * c.counts["counter"]]
        if len(match) == 1:
            out.merge(match[0], tk, reason=True)
