"""Records of a diagnosis: the symptom, the path, and ranked verdicts with evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SCHEMA = "vnetdiag.diagnosis/1"

EvidenceSource = Literal["trace", "counter", "config", "probe"]
Cause = Literal["drop", "tx-stall", "guest-tx-stall", "conntrack-full", "mtu-mismatch", "queueing", "softnet-drop", "rp-filter", "no-route",
                "fragmentation", "no-neighbour"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PathHop:
    """One device a packet from A to B (or back) crosses."""

    netns: str
    """Namespace label, for people (model.namespaces.label)."""
    device: str
    netns_inode: int = 0
    """The namespace's identity: what verdicts join on."""
    kind: str | None = None
    mtu: int | None = None
    direction: Literal["forward", "reverse"] = "forward"
    """forward: on the way from A to B; reverse: on the way back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    source: EvidenceSource
    text: str
    count: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Symptom:
    """What the probe saw, reduced to the numbers verdicts are compared with."""

    pattern: str
    transactions: int
    p50_us: float
    p99_us: float
    max_us: float
    tails: int
    """Slow transactions (and connects) whose signature implies a retransmission."""
    tails_by_signature: dict[str, int] = field(default_factory=dict)
    retrans_segs: int = 0
    """TcpRetransSegs delta at the client plus at the server."""
    syn_retrans: int = 0
    udp_lost: int = 0
    errors: int = 0
    """Transactions that failed outright (timeouts, resets)."""

    @property
    def losses(self) -> int:
        """Packets the symptom says were lost: the largest of the independent counts."""
        return max(self.tails, self.retrans_segs, self.syn_retrans, self.udp_lost)


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    rank: int
    netns: str | None
    """Namespace label, for people; None for host-wide causes (softnet)."""
    device: str | None
    """None for namespace-wide causes (the conntrack table)."""
    direction: Literal["rx", "tx", ""]
    queue: str | None
    """The qdisc ("tbf 8001:"), ring or rule where known."""
    cause: Cause
    reason: str | None
    """The kernel's drop reason (from skb:kfree_skb) or the counter's name."""
    count: int
    confidence: float
    """0..1: how strongly the evidence ties this hop to the symptom."""
    on_path: bool
    exact_match: bool
    """The count equals the symptom's count (tails, retransmits or lost replies)."""
    evidence: tuple[Evidence, ...]
    confirm: str
    """What would confirm or refute this verdict."""
    netns_inode: int | None = None
    """The namespace's identity (None for host-wide causes or an unplaced drop)."""
    probe_packets: int | None = None
    """How many of the probe's own lost packets were traced dying here (eBPF flow
    records); None when no tracer could tell the probe's packets from others'."""
    background: int = 0
    """Packets dropped here that were other traffic's, not the probe's."""
    drop_times_s: tuple[float, ...] = ()
    """When the traced drops here happened, in seconds from the start of the
    measured window (at most 2,000): the timeline against the tails."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Diagnosis:
    source: str
    target: str
    pattern: str
    window_s: float
    symptom: Symptom
    path: tuple[PathHop, ...]
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
    """What could not be measured (tracer lost events, counters unreadable, ...)."""
    trace_complete: bool | None = None
    """None when the tracer did not run."""
    shortfall: str | None = None
    """Why the probe did not measure the path as asked; None when it did."""
    backend: str | None = None
    """The drop tracer that ran: "ebpf", "tracefs", or None."""

    @property
    def measured(self) -> bool:
        return self.shortfall is None

    @property
    def problem_found(self) -> bool:
        """A verdict, or a probe that could not measure the path: never "clean" then."""
        return bool(self.verdicts) or not self.measured
