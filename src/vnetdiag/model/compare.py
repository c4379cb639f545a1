"""Records of ``vnetdiag compare``: several paths probed in interleaved slices,
each path's figures, how each path is built, and the differences against the
first path with their confidence intervals.

Latencies are in microseconds (``*_us``); rates are per second; shares are
fractions (0.01 is one per cent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vnetdiag.model.probe import HistogramBin, LatencyStats

SCHEMA = "vnetdiag.compare/1"

Metric = Literal["p50_us", "p99_us", "p999_us", "loss_rate", "rate_per_s"]
METRICS: tuple[str, ...] = ("p50_us", "p99_us", "p999_us", "loss_rate", "rate_per_s")


@dataclass(frozen=True, kw_only=True)
class PathSpec:
    """A path as the user named it: ``LABEL=FROM->TO``."""

    label: str
    source: str
    """FROM as typed: a namespace in any form or a lab node, optionally :ADDRESS."""
    target: str
    """TO as typed (the probe server runs there)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Slice:
    """One short probe run of one path in one round."""

    path: int
    """Index of the path in the order given."""
    round: int
    position: int
    """Place of this slice in its round (0 = first): the order rotates each round."""
    started_s: float
    """Seconds since the compare began, when the slice started."""
    duration_s: float
    """Measured seconds of the slice (its warm-up excluded)."""
    transactions: int
    trials: int
    """What the loss rate is a share of: requests sent (udp-rr) or transactions (TCP)."""
    lost: int
    """udp-rr: requests never answered; TCP: transactions with a retransmission
    timer signature (min-rto and its doublings, SYN retransmits)."""
    errors: int
    retrans_segs: int
    """TcpRetransSegs moved at both ends during the slice (0 for udp-rr)."""
    tails: dict[str, int]
    """Slow transactions by timer signature ("min-rto", "rto-x2", "other", ...)."""
    latency_us: np.ndarray
    """Every measured transaction's latency (float64), from the probe's raw log."""
    shortfall: str | None = None


@dataclass(frozen=True, kw_only=True)
class HopBuild:
    """One device a path crosses and how it is built (from the inventory)."""

    direction: Literal["forward", "reverse"]
    netns: str
    netns_inode: int | None
    device: str
    ifindex: int | None
    kind: str
    """IFLA_INFO_KIND ("veth", "bridge", "macvtap", ...), "-" for devices without one."""
    driver: str
    """ethtool's driver name ("veth", "virtio_net", ...), "-" if unknown."""
    role: str
    """egress, ingress, forward, deliver, ... as the path walk labelled it."""
    queues: str
    """"RX/TX" queue counts."""
    qdisc: str
    """Root qdisc kind ("noqueue", "fq_codel", "tbf", ...), "" when none was read."""
    offloads: tuple[str, ...]
    """Active offloads among sg, tso, gso, gro, csum."""
    num_vf: int | None
    """SR-IOV virtual functions of the device, None when it is not SR-IOV capable."""
    details: str
    """Kind-specific facts: vxlan VNI and VTEPs, macvtap mode, tap queues, VFs."""


@dataclass(frozen=True, kw_only=True)
class PathBuild:
    """How a path is built, both ways."""

    hops: tuple[HopBuild, ...]
    complete: bool
    """Both directions were walked to the other end's stack."""
    notes: tuple[str, ...] = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct device kinds of the forward direction, in order."""
        seen: list[str] = []
        for h in self.hops:
            if h.direction == "forward" and h.kind not in seen:
                seen.append(h.kind)
        return tuple(seen)


@dataclass(frozen=True, kw_only=True)
class PathFigures:
    """One path's figures over all of its slices."""

    label: str
    source: str
    target: str
    source_netns: str
    target_netns: str
    client_address: str | None
    server_address: str
    slices: int
    duration_s: float
    """Measured seconds over all slices."""
    transactions: int
    rate_per_s: float
    latency: LatencyStats
    """Percentiles of every slice's transactions merged (HDR, as the probe reports them)."""
    trials: int
    lost: int
    loss_rate: float
    """lost / trials (see ``Slice.lost``)."""
    errors: int
    retrans_segs: int
    tails: dict[str, int]
    histogram: tuple[HistogramBin, ...]
    """Counts on edges shared by every path (for the overlaid histograms)."""
    build: PathBuild | None
    shortfalls: tuple[str, ...] = ()
    """Why some slices did not measure the path as asked (one per such slice)."""

    def metric(self, name: str) -> float:
        """A metric by the name the differences use (``METRICS``)."""
        if name == "loss_rate":
            return self.loss_rate
        if name == "rate_per_s":
            return self.rate_per_s
        return self.latency.get({"p50_us": "p50", "p99_us": "p99", "p999_us": "p999"}[name])


@dataclass(frozen=True, kw_only=True)
class Difference:
    """One metric of a path minus the same metric of the baseline (the first path)."""

    path: str
    baseline: str
    metric: Metric
    estimate: float
    """The path's value minus the baseline's, from all of the data."""
    low: float | None
    high: float | None
    """The confidence interval's ends; None when there were too few rounds."""
    level: float
    significant: bool
    """The interval excludes zero."""


@dataclass(frozen=True, kw_only=True)
class Inference:
    """How the intervals were computed (recorded so a reader can redo them)."""

    method: str
    level: float
    resamples: int
    seed: int
    rounds: int
    bin_ratio: float
    """Width of the latency bins the resampled quantiles are read from (1.005: 0.5 %)."""


@dataclass(frozen=True, kw_only=True)
class CompareResult:
    pattern: str
    streams: int
    slice_s: float
    warmup_s: float
    """Unmeasured seconds at the start of each slice."""
    rounds: int
    """Complete rounds: each path had one slice in each."""
    paths: tuple[PathFigures, ...]
    differences: tuple[Difference, ...]
    inference: Inference
    slices: tuple[Slice, ...]
    interrupted: bool = False
    notes: tuple[str, ...] = field(default=())
