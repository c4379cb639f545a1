"""Watch records: alerts raised by detectors, their transitions, the watch
configuration, and what recovery actions did.

An alert is keyed by (detector, subject); the subject names what it is about
("vnd-hv2/vm3-p", "vnd-hv2/vm3-p/tx-queue 0", "vnd-hv1" for a namespace,
"cpu 1" for a CPU). Identity of devices stays (netns inode, ifindex) in
``ifref``; names are labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vnetdiag.model.counters import CounterSnapshot

Severity = Literal["warning", "critical"]
Change = Literal["raised", "cleared", "event"]
""""raised"/"cleared" for conditions that last; "event" for one-off changes
(carrier flapped, MTU changed, device gone) that have nothing to clear."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    detector: str
    """Name of the detector that owns it (tx_stall, drop_anomaly, conntrack, link)."""
    subject: str
    """What it is about, human-readable and stable across cycles."""
    kind: str
    """The condition within the detector (e.g. "backlog-frozen", "rx_dropped",
    "table-nearly-full", "carrier-change")."""
    severity: Severity
    summary: str
    netns: str | None = None
    """Namespace label."""
    netns_inode: int | None = None
    device: str | None = None
    ifindex: int | None = None
    queue: int | None = None
    evidence: dict[str, float | int | str | None] = field(default_factory=dict)
    """The numbers the rule looked at in the cycle that decided (rates per
    second, deltas per interval, gauges), by name."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.detector, self.subject, self.kind)


@dataclass(frozen=True, kw_only=True, slots=True)
class Transition:
    change: Change
    alert: Alert
    at_unix_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionSpec:
    """One step of a detector's recovery ladder."""

    kind: Literal["link-bounce", "offloads-off", "qdisc-reset", "exec"]
    cooldown_s: float = 30.0
    """Wait this long after an attempt before judging it and trying again."""
    max_attempts: int = 1
    """Attempts of this step for one alert before moving to the next step."""
    command: tuple[str, ...] = ()
    """For exec: argv; the alert JSON is written to its stdin."""
    timeout_s: float = 10.0
    """For exec: killed (whole process group) after this long."""
    features: tuple[str, ...] = ("gso", "tso", "sg", "gro")
    """For offloads-off: ethtool -K feature names."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectorConfig:
    name: str
    enabled: bool = True
    params: dict[str, float | int | bool | str | list] = field(default_factory=dict)
    """Detector-specific tunables (documented per detector in docs/watch.md)."""
    actions: tuple[ActionSpec, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ExporterConfig:
    listen: str | None = None
    """"ADDR:PORT" to serve /metrics from inside watch; None: no exporter."""
    devices_include: tuple[str, ...] = ()
    """Globs on device names; empty: all."""
    devices_exclude: tuple[str, ...] = ()
    netstat_fields: str | None = None
    """Regular expression on "Section_Counter" names; None: the default set."""
    driver_stats: bool = False
    """Also export ethtool -S counters (per queue with a queue label)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WatchConfig:
    interval_s: float = 5.0
    namespaces: tuple[str, ...] = ()
    """Globs on namespace names ("host" for the host); empty: every namespace."""
    detectors: tuple[DetectorConfig, ...] = ()
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    journal: str | None = None
    """Path of the alert/action journal (JSON lines)."""
    dry_run: bool = False
    tracer: bool = False
    """Also run the kernel drop tracer (drop reasons, net_dev_xmit_timeout)."""

    def detector(self, name: str) -> DetectorConfig:
        for d in self.detectors:
            if d.name == name:
                return d
        return DetectorConfig(name=name)


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionResult:
    """What one action attempt did."""

    action: str
    attempt: int
    """1-based attempt number of this step for this alert."""
    status: Literal["ok", "failed", "timeout", "dry-run", "skipped"]
    detail: str = ""
    """The command(s) run, or their error output."""
    duration_s: float = 0.0
    returncode: int | None = None
    detector: str = ""
    subject: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class XmitTimeout:
    """A net:net_dev_xmit_timeout event (the netdev watchdog fired)."""

    netns_inode: int | None
    device: str
    queue: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ReasonCount:
    """Kernel drops of one reason on one interface during a cycle (the tracer's)."""

    netns_inode: int
    ifindex: int
    reason: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """What detectors get each cycle: two successive snapshots (``previous`` is
    None on the first cycle) and what only other sources can tell."""

    previous: CounterSnapshot | None
    current: CounterSnapshot
    xmit_timeouts: tuple[XmitTimeout, ...] = ()
    """Watchdog events seen during the interval (only when the tracer runs)."""
    drop_reasons: tuple[ReasonCount, ...] = ()
    """Drops per interface and kernel reason from the tracer, when it runs."""
    port_range: tuple[int, int] | None = None
    """net.ipv4.ip_local_port_range used for the ephemeral-port arithmetic."""
