"""Records of the request/response latency probe (``vnetdiag probe``).

Latencies are kept in nanoseconds while measuring (HDR histograms) and reported
in microseconds (``*_us``) or milliseconds (``*_ms``) as the field names say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SCHEMA = "vnetdiag.probe/1"

Pattern = Literal["tcp-rr", "tcp-crr", "udp-rr", "bsp"]
PATTERNS: tuple[str, ...] = ("tcp-rr", "tcp-crr", "udp-rr", "bsp")

Phase = Literal["transaction", "connect"]


@dataclass(frozen=True, kw_only=True)
class Percentile:
    name: str
    """"p50", "p90", "p99", "p999", "p9999" or "max"."""
    quantile: float
    latency_us: float
    samples_beyond: int
    """Samples at or above this latency: what the value rests on (the p99.99 of
    20,000 samples rests on 2 of them)."""


@dataclass(frozen=True, kw_only=True)
class LatencyStats:
    count: int
    min_us: float
    mean_us: float
    max_us: float
    percentiles: tuple[Percentile, ...]

    def get(self, name: str) -> float:
        for p in self.percentiles:
            if p.name == name:
                return p.latency_us
        raise KeyError(name)


@dataclass(frozen=True, kw_only=True)
class HistogramBin:
    """One bar of the log-scale histogram: samples in [low_us, high_us)."""

    low_us: float
    high_us: float
    count: int


@dataclass(frozen=True, kw_only=True)
class SlowTransaction:
    """A transaction (or connect) slower than the probe's slow threshold, with the
    TCP_INFO evidence read right after it."""

    stream: int
    at_s: float
    """Seconds since the start of the measured period when it completed."""
    phase: Phase
    latency_us: float
    client_retrans_delta: int | None
    """Increase of the client socket's tcpi_total_retrans since the previous read
    (None when not TCP or not readable)."""
    server_retrans_delta: int | None
    """The same for the server's socket of this connection, as the server reported
    it (None when the server could not be asked, e.g. for connects)."""
    client_backoff: int | None
    """tcpi_backoff of the client socket when read (RTO doublings in progress)."""


@dataclass(frozen=True, kw_only=True)
class TailBucket:
    """Slow transactions whose latency matches one timer signature."""

    signature: str
    """"min-rto", "rto-x2", "rto-x4", ... (the minimum RTO and its doublings),
    "delayed-ack", "syn-retrans-1", "syn-retrans-2", ... (cumulative SYN
    retransmits), or "other"."""
    phase: Phase
    threshold_ms: float
    """Lower edge of the signature's latency band."""
    upper_ms: float | None
    """Upper edge (exclusive); None for an open band."""
    count: int
    share: float
    """count / transactions (or / connects for the connect phase)."""
    confirmed_by_tcp_info: int
    """How many of them TCP_INFO showed a retransmission for (client or server)."""
    expected_retransmits: int
    """Retransmissions the signature implies per transaction (0 for delayed-ACK)."""


@dataclass(frozen=True, kw_only=True)
class TcpCounters:
    """TCP MIB deltas over the run, from /proc/net/snmp and /proc/net/netstat."""

    netns_inode: int
    retrans_segs_delta: int
    syn_retrans_delta: int
    server_netns_inode: int | None = None
    server_retrans_segs_delta: int | None = None
    """The server's namespace deltas over its session, as the server reported them."""
    server_syn_retrans_delta: int | None = None
    tcp_info_client_retrans: int = 0
    """Retransmissions TCP_INFO showed on the probe's sockets across slow
    transactions: compare with retrans_segs_delta."""
    tcp_info_server_retrans: int = 0
    """The same on the server's sockets: compare with server_retrans_segs_delta."""


@dataclass(frozen=True, kw_only=True)
class UdpCounts:
    sent: int
    replies: int
    """Distinct requests answered in time."""
    lost: int
    """Requests never answered, not even late."""
    late: int
    """Replies that arrived after the request's deadline (not counted as lost)."""
    duplicate: int
    reordered: int
    """Replies that arrived after a reply to a later request."""
    server_received: int | None
    """Measured requests the server says it received (warm-up ones are marked and
    not counted)."""
    requests_lost: int | None
    """sent - server_received: requests lost on the way there; the rest of
    ``lost`` were replies lost on the way back."""


@dataclass(frozen=True, kw_only=True)
class BspStats:
    steps: int
    ranks: int
    compute_ms: float
    communication: LatencyStats
    """Per-step communication time: the slowest rank's exchange in each step."""
    efficiency: float
    """compute / (compute + communication) over all steps."""


@dataclass(frozen=True, kw_only=True)
class StreamStats:
    stream: int
    worker: int
    transactions: int
    rate_per_s: float
    errors: int
    p50_us: float
    p99_us: float
    max_us: float
    starved: bool
    """Rate below half the median stream rate: this stream got little service."""


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    target: str
    port: int
    pattern: Pattern
    netns: str | None
    streams: int
    workers: int
    duration_s: float
    """Measured period actually run (shorter when interrupted)."""
    warmup_s: float
    request_bytes: int
    response_bytes: int
    rate_target_per_s: float | None
    """--rate: open-loop pacing over all streams; None for closed loop."""
    transactions: int
    errors: int
    rate_per_s: float
    latency: LatencyStats
    """Coordinated-omission corrected when paced (from intended send time)."""
    latency_uncorrected: LatencyStats | None
    connect: LatencyStats | None
    """tcp-crr: the connect() time alone."""
    histogram: tuple[HistogramBin, ...]
    tails: tuple[TailBucket, ...]
    slow: tuple[SlowTransaction, ...]
    """The slowest transactions with their evidence (at most a few hundred)."""
    slow_threshold_ms: float
    rto_min_ms: float
    rto_min_source: str
    """Where rto_min came from: "route" (ip route ... rto_min), "sysctl"
    (net.ipv4.tcp_rto_min_us) or "default"."""
    syn_linear_timeouts: int
    """net.ipv4.tcp_syn_linear_timeouts of the probe's namespace (0 if absent):
    the SYN retransmission schedule the connect bands follow."""
    tcp: TcpCounters | None
    udp: UdpCounts | None
    bsp: BspStats | None
    per_stream: tuple[StreamStats, ...]
    interrupted: bool = False
    notes: tuple[str, ...] = field(default=())
    shortfall: str | None = None
    """Why this probe did not measure the path as asked, in one sentence (no
    transaction completed, a stream failed or completed none, far fewer paced
    transactions than scheduled, most connects failed); None when it did. A
    result with a shortfall is part of the symptom, never a clean path."""

    @property
    def measured(self) -> bool:
        """The probe measured the path as asked (no shortfall)."""
        return self.shortfall is None

    def as_document(self) -> dict:
        """The ``vnetdiag.probe/1`` document (plain JSON types only)."""
        from dataclasses import asdict

        def lat(stats: LatencyStats | None) -> dict | None:
            if stats is None:
                return None
            d = {p.name: round(p.latency_us, 3) for p in stats.percentiles}
            d.update(count=stats.count, min=round(stats.min_us, 3), mean=round(stats.mean_us, 3))
            d["samples_beyond"] = {p.name: p.samples_beyond for p in stats.percentiles}
            return d

        doc: dict = {"schema": SCHEMA}
        doc.update(
            target=self.target, port=self.port, pattern=self.pattern, netns=self.netns,
            streams=self.streams, workers=self.workers, duration_s=round(self.duration_s, 3),
            warmup_s=self.warmup_s, request_bytes=self.request_bytes,
            response_bytes=self.response_bytes, rate_target_per_s=self.rate_target_per_s,
            transactions=self.transactions, errors=self.errors,
            rate_per_s=round(self.rate_per_s, 1), latency_us=lat(self.latency),
            latency_uncorrected_us=lat(self.latency_uncorrected), connect_us=lat(self.connect),
            histogram=[asdict(b) for b in self.histogram],
            tails=[asdict(t) for t in self.tails], slow=[asdict(s) for s in self.slow],
            slow_threshold_ms=self.slow_threshold_ms, rto_min_ms=self.rto_min_ms,
            rto_min_source=self.rto_min_source, syn_linear_timeouts=self.syn_linear_timeouts,
            tcp=asdict(self.tcp) if self.tcp else None,
            per_stream=[asdict(s) for s in self.per_stream],
            interrupted=self.interrupted, notes=list(self.notes), shortfall=self.shortfall,
        )
        if self.udp is not None:
            doc.update(asdict(self.udp))
        if self.bsp is not None:
            b = self.bsp
            doc["bsp"] = {"steps": b.steps, "ranks": b.ranks, "compute_ms": b.compute_ms,
                          "communication_us": lat(b.communication), "efficiency": round(b.efficiency, 4)}
        return doc
