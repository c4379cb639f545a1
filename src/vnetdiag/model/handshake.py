"""Results of probing a peer that runs nothing of ours (a VM's bare guest, a
router): TCP handshakes answered by its kernel, ICMP echo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vnetdiag.model.probe import HistogramBin, LatencyStats

HandshakePattern = Literal["tcp-syn", "icmp-echo"]
HANDSHAKE_PATTERNS: tuple[str, ...] = ("tcp-syn", "icmp-echo")
HANDSHAKE_SCHEMA = "vnetdiag.handshake/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeResult:
    target: str
    port: int | None
    """TCP port (tcp-syn); None for icmp-echo."""
    pattern: HandshakePattern
    netns: str | None
    """Namespace the probe ran in (a path), None for the caller's own."""
    attempts: int
    answers: dict
    """What came back, by kind: {"syn-ack": n, "rst": n} or {"echo-reply": n}."""
    timeouts: int
    """Attempts with no answer within ``timeout_s``."""
    errors: int
    """Attempts that failed otherwise (unreachable, ...)."""
    timeout_s: float
    interval_s: float
    duration_s: float
    latency: LatencyStats
    """Round trips of answered attempts: SYN -> SYN-ACK or RST, echo -> reply."""
    histogram: tuple[HistogramBin, ...]
    syn_retransmits: dict
    """tcp-syn: answered attempts by the number of SYN retransmissions their
    round trip implies (1 s, then doubling: the kernel's SYN schedule),
    e.g. {"0": 998, "1": 2}."""
    slowest_ms: tuple[float, ...]
    """The slowest round trips (at most 20), newest evidence of a tail."""

    @property
    def answered(self) -> int:
        return sum(self.answers.values())

    def as_document(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["latency"] = {p.name: round(p.latency_us, 3) for p in self.latency.percentiles} | {
            "count": self.latency.count, "min": round(self.latency.min_us, 3), "mean": round(self.latency.mean_us, 3),
            "max": round(self.latency.max_us, 3)}
        return {"schema": HANDSHAKE_SCHEMA, "answered": self.answered, **d}
