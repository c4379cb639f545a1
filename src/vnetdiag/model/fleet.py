"""Records the fleet agent sends back, and the per-host results the coordinator keeps.

Each answer of the agent protocol (fleet/protocol.py) is one of these records
(or a record of another model module: CounterSnapshot, TraceAnalysis,
ProbeResult) turned into JSON by ``model.plain``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.netfilter import RuleCounter
from vnetdiag.model.probe import ProbeResult
from vnetdiag.model.topology import PathResult, Topology
from vnetdiag.model.tracing import TraceAnalysis


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSnapshot:
    """Counters of the namespaces in an agent's scope, and their dropping firewall rules."""

    snapshot: CounterSnapshot
    rules: tuple[RuleCounter, ...] = ()
    problems: tuple[str, ...] = ()
    """Rules that could not be read or counted."""
    mono_ns: int = 0
    """The agent's CLOCK_MONOTONIC when the snapshot was taken."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockReading:
    """The agent's clocks, read between receiving a clock request and answering it."""

    mono_ns: int
    """CLOCK_MONOTONIC: the clock of traced drops and probe phases."""
    wall_ns: int
    """CLOCK_REALTIME."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockOffset:
    """One host's clock against the coordinator's, from NTP-style round trips."""

    host: str
    offset_ns: int
    """Agent CLOCK_MONOTONIC minus coordinator CLOCK_MONOTONIC (at the same instant)."""
    wall_offset_ns: int
    """The same for CLOCK_REALTIME."""
    rtt_ns: int
    """Round trip of the exchange the offset was taken from (the shortest): its error is at most half this."""
    samples: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeStarted:
    bind: str
    port: int
    netns_inode: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeStopped:
    port: int
    accepted: int
    protocol_errors: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeAnswer:
    """The probe's result, or why it could not run (B unreachable is a symptom too)."""

    result: ProbeResult | None
    failure: str | None = None
    started_mono_ns: int | None = None
    """The agent's CLOCK_MONOTONIC when every stream was connected (probe phase "start")."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TopologyAnswer:
    topology: Topology | None
    """None unless asked for (it is the largest answer)."""
    paths: tuple[PathResult, ...] = ()
    """One per requested (namespace, destination address), walked on this host only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Host:
    """One host the coordinator can reach: from a hosts file or an ssh destination."""

    name: str
    """The inventory name (or the destination as typed): what verdicts and notes say."""
    destination: str
    """What ssh connects to: ``[user@]address``."""
    port: int | None = None
    ssh_options: tuple[str, ...] = ()
    """Extra ssh arguments (``ansible_ssh_common_args``, a key file, ``-o ProxyCommand=...``)."""
    command: str = "vnetdiag"
    """The vnetdiag executable on the host (``vnetdiag_command``: a venv's bin/vnetdiag)."""
    netns: tuple[str, ...] = ()
    """The namespaces the host's agent answers for (``vnetdiag_netns``); empty: all of them."""
    groups: tuple[str, ...] = ()
    role: str | None = None
    """What peers are compared by (``vnetdiag_role``, else the first group)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceAnswer:
    """One host's drop trace window, restricted to the agent's namespaces."""

    drops: DropTraceResult
    """Its ``analysis`` is carried in ``analysis`` below (typed), not here."""
    analysis: TraceAnalysis | None = None
    """The tracefs backend's analysis (None for eBPF)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DropPlace:
    """One place of the fleet ranking: a host's device dropping for a reason, at a rate."""

    host: str
    """The ``host`` label of the scrape target (``instance`` when it has none)."""
    netns: str
    device: str
    reason: str
    rate_per_s: float
    role: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class FleetAlert:
    name: str
    host: str
    state: str
    """"pending" (its ``for`` has not elapsed) or "firing"."""
    value: float | None = None
