"""What every evidence kind works on: the context of one bundle and the candidates.

A *candidate* is a place (namespace inode, device) and a cause that some
evidence says packets died of. Each evidence kind (one module each, listed in
``analyze/evidence/__init__.py``) adds candidates and may merge candidates that
are one loss seen twice. ``analyze/correlate.py`` runs the kinds in order and
scores what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vnetdiag.analyze.deltas import delta as counter_delta
from vnetdiag.model.bundle import Bundle
from vnetdiag.model.deltas import SnapshotDelta
from vnetdiag.model.diagnosis import Cause, Evidence, EvidenceSource
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import IfRef, inode_label

Key = tuple[int | None, str | None, str]
"""(namespace inode, device, cause): a candidate's identity. Never a label."""

STALLS: tuple[Cause, ...] = ("tx-stall", "guest-tx-stall")
"""Causes seen as frozen state, not counted losses: no count needs to match the
symptom, and nothing crosses them, ARP and ND included."""


@dataclass(kw_only=True)
class Candidate:
    """One place and cause, and every piece of evidence that points at it."""

    netns: int | None
    """Namespace inode; None for host-wide causes (softnet) or a drop that could not be placed."""
    device: str | None
    """None for namespace-wide causes (the conntrack table, a rule without a device)."""
    cause: Cause
    direction: str = ""
    queue: str | None = None
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Evidence kind -> packets it says died here. One loss seen by several kinds
    is counted once: the candidate's count is the largest, not the sum."""
    probe_packets: int = 0
    """The probe's own lost packets placed here (eBPF flow records)."""
    directions: dict[str, int] = field(default_factory=dict)
    """The probe's lost packets here by direction: 'forward' (client to server), 'reverse'."""
    background: int = 0
    """Packets dropped here that are known not to be the probe's (eBPF flows)."""
    config: bool = False
    """Configuration on the path explains a loss here (an MTU)."""
    ambiguous: tuple[int, ...] = ()
    """Namespaces (inodes) a traced device name could be in, when the trace could not tell."""
    inferred: bool = False
    """The namespace was chosen among several because only it is on the path."""
    locations: set[str] = field(default_factory=set)
    times_ns: list[int] = field(default_factory=list)
    """CLOCK_MONOTONIC times of the traced drops here (the probe's first when known)."""
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def count(self) -> int:
        return max([self.probe_packets, *self.counts.values()] or [0])

    @property
    def kinds(self) -> set[str]:
        return set(self.counts) | ({"mtu"} if self.config else set())

    def add(self, kind: str, n: int, source: EvidenceSource, text: str) -> None:
        self.counts[kind] = max(self.counts.get(kind, 0), n)
        self.evidence.append(Evidence(source=source, text=text, count=n))

    def absorb(self, other: Candidate, *, reason: bool = False) -> None:
        """Take ``other``'s evidence: it saw the same packets from another place."""
        for k, n in other.counts.items():
            self.counts[k] = max(self.counts.get(k, 0), n)
        self.probe_packets = max(self.probe_packets, other.probe_packets)
        for d, n in other.directions.items():
            self.directions[d] = max(self.directions.get(d, 0), n)
        self.background = max(self.background, other.background)
        self.config = self.config or other.config
        self.locations |= other.locations
        self.times_ns.extend(other.times_ns)
        self.evidence.extend(other.evidence)
        self.queue = self.queue or other.queue
        self.direction = self.direction or other.direction
        if reason or self.reason is None or is_generic(self.reason):
            self.reason = other.reason or self.reason


def is_generic(reason: str | None) -> bool:
    """A reason that names no cause: the kernel's NOT_SPECIFIED, or a counter's
    name (rx_dropped, qdisc drops) that says where but not why."""
    return reason is None or reason == "NOT_SPECIFIED" or reason.endswith(("dropped", "errors", "drops"))


class Candidates(dict[Key, Candidate]):
    def at(self, netns: int | None, device: str | None, cause: Cause, **init) -> Candidate:
        key = (netns, device, cause)
        c = self.get(key)
        if c is None:
            c = self[key] = Candidate(netns=netns, device=device, cause=cause, **init)
        return c

    def merge(self, into: Key, other: Key, *, reason: bool = False) -> None:
        if into != other and into in self and other in self:
            self[into].absorb(self.pop(other), reason=reason)


@dataclass(kw_only=True)
class Context:
    """One bundle, with what several kinds derive from it computed once."""

    bundle: Bundle
    delta: SnapshotDelta
    labels: dict[int, str]
    """Namespace inode -> label, for evidence text only."""
    interfaces: dict[IfRef, Interface]
    """The interfaces of the snapshot after the window."""
    by_place: dict[tuple[int, str], Interface]
    path_keys: set[tuple[int, str]]
    path_netns: set[int]
    notes: list[str] = field(default_factory=list)
    """Notes for the diagnosis (off-path losses that need no explaining, ...)."""

    @classmethod
    def of(cls, b: Bundle) -> Context:
        labels = {n.inode: n.label for n in (*b.before.namespaces, *b.after.namespaces)}
        labels.update({h.netns_inode: h.netns for h in b.path})
        ifaces = {ic.interface.ref: ic.interface for ic in b.after.interfaces}
        return cls(bundle=b, delta=counter_delta(b.before, b.after), labels=labels, interfaces=ifaces,
                   by_place={(i.ref.netns_inode, i.name): i for i in ifaces.values()},
                   path_keys={(h.netns_inode, h.device) for h in b.path},
                   path_netns={h.netns_inode for h in b.path})

    @property
    def flows_known(self) -> bool:
        """The tracer read each dropped packet's flow (eBPF), so the probe's own
        lost packets can be told from other traffic's."""
        d = self.bundle.drops
        return d is not None and d.backend == "ebpf" and self.bundle.probe is not None

    def name(self, inode: int | None) -> str:
        if inode is None:
            return "an unknown namespace"
        return self.labels.get(inode) or inode_label(inode)

    def where(self, c: Candidate) -> str:
        return f"{c.device} in {self.name(c.netns)}" if c.device else f"namespace {self.name(c.netns)}"

    def neighbours(self, netns: int, device: str) -> set[tuple[int, str]]:
        """Devices a packet crosses right before or after this one: a veth's peer,
        a stacked device's lower one (macvtap, vlan) and back, a vxlan's underlay."""
        me = self.by_place.get((netns, device))
        if me is None:
            return set()
        out: set[tuple[int, str]] = set()
        if me.link is not None and me.link in self.interfaces:
            peer = self.interfaces[me.link]
            out.add((peer.ref.netns_inode, peer.name))
        for other in self.interfaces.values():
            if other.link == me.ref:
                out.add((other.ref.netns_inode, other.name))
        if me.vxlan is not None and me.vxlan.underlay_ifindex:
            low = self.interfaces.get(IfRef(netns_inode=netns, ifindex=me.vxlan.underlay_ifindex))
            if low is not None:
                out.add((netns, low.name))
        return out

    def broadcast_domain(self, netns: int, device: str) -> set[tuple[int, str]]:
        """The devices a broadcast from this one reaches (where its ARP and ND
        go): veth peers, stacked devices and their lower ones, a bridge and all
        its ports, and vxlan devices that tunnel to each other: same VNI and
        port, and one's remote the other's local address or their common
        group. A vxlan device without a remote finds its peers in its FDB,
        which the snapshot does not hold: it pairs with every device of its
        VNI and port (a caller that needs more asks for a place on the path
        too). A tap ends it: past it is a guest."""
        me = self.by_place.get((netns, device))
        if me is None:
            return set()
        seen, todo = {me.ref}, [me]
        while todo:
            i = todo.pop()
            near = [self.interfaces[r] for r in (i.link,) if r is not None and r in self.interfaces]
            near += [o for o in self.interfaces.values() if o.link == i.ref]
            if i.master_ifindex:
                master = self.interfaces.get(IfRef(netns_inode=i.ref.netns_inode, ifindex=i.master_ifindex))
                near += [master] if master is not None else []
            near += [o for o in self.interfaces.values()
                     if o.master_ifindex == i.ref.ifindex and o.ref.netns_inode == i.ref.netns_inode]
            if i.vxlan is not None:
                near += [o for o in self.interfaces.values() if o.vxlan is not None
                         and (o.vxlan.vni, o.vxlan.port) == (i.vxlan.vni, i.vxlan.port)
                         and (not (i.vxlan.remote and o.vxlan.remote)
                              or i.vxlan.remote in (o.vxlan.local, o.vxlan.remote)
                              or o.vxlan.remote == i.vxlan.local)]
            for o in near:
                if o.ref not in seen:
                    seen.add(o.ref)
                    todo.append(o)
        return {(r.netns_inode, self.interfaces[r].name) for r in seen}


class EvidenceKind(Protocol):
    """One kind of evidence: a module in ``analyze/evidence/``, listed in ``KINDS``."""

    name: str
    source: EvidenceSource
    weight: float
    """What this kind adds to a verdict's confidence when it supports it (see docs/diagnose.md)."""
    confirm: str
    """How the user confirms a verdict this kind supports; {device}, {netns}, {size} are filled in."""

    def candidates(self, ctx: Context, out: Candidates) -> None:
        """Add (or add to) the candidates this kind of evidence points at."""

    def merge(self, ctx: Context, out: Candidates) -> None:
        """Fold candidates that are one loss seen twice (runs after every kind's candidates)."""
