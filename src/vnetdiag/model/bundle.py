"""A diagnose bundle: everything one window's verdicts are drawn from.

diagnose collects a bundle (counters before and after, firewall rule deltas,
traced drops from either backend, the probe's symptom and flows, the path);
``analyze.correlate`` turns it into verdicts without any I/O. A bundle saved to
a file (``diagnose --save-bundle``) is replayed by the tests and by anyone the
user sends it to: the verdicts come out the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.diagnosis import PathHop, Symptom
from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.handshake import HandshakeResult
from vnetdiag.model.netfilter import RuleCounter, RuleTrace
from vnetdiag.model.routes import NetnsRoutes
from vnetdiag.model.tracing import TraceAnalysis

SCHEMA = "vnetdiag.bundle/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleDelta:
    """A dropping firewall rule and how many packets it dropped in the window."""

    rule: RuleCounter
    packets: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeFlows:
    """What makes a packet one of the probe's: its transport, its two addresses
    and the server's port (client ports are ephemeral; tcp-crr opens thousands)."""

    proto: int
    """IP protocol number: 6 (tcp-rr, tcp-crr) or 17 (udp-rr)."""
    client: str
    server: str
    server_port: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Bundle:
    symptom: Symptom
    path: tuple[PathHop, ...]
    before: CounterSnapshot
    after: CounterSnapshot
    rules: tuple[RuleDelta, ...] = ()
    rule_traces: tuple[RuleTrace, ...] = ()
    """Rules that netfilter's own tracing saw drop the probe's packets (nft monitor trace)."""
    routes: tuple[NetnsRoutes, ...] = ()
    """Routes, policy rules and rp_filter of the namespaces on the path, read after the window."""
    trace: TraceAnalysis | None = None
    """Drops from the tracefs backend (devices placed by name), None when it did not run."""
    drops: DropTraceResult | None = None
    """Drops from the eBPF backend (per-packet records with flows, kernel counts)."""
    probe: ProbeFlows | None = None
    tails: tuple[tuple[float, float], ...] = ()
    """(start_s, end_s) of the slow transactions, from ``window_start_ns``."""
    handshake: HandshakeResult | None = None
    """The server-less probe's result towards a far end (a VM's guest), else None."""
    window_start_ns: int | None = None
    """CLOCK_MONOTONIC start of the measured window: the clock of traced drops."""
    notes: tuple[str, ...] = ()
    """What could not be measured, carried into the diagnosis."""
    shortfall: str | None = None
    """Why the probe did not measure the path (it could not run, completed no
    transaction, far fewer than asked): part of the symptom, never a clean path."""
    source: str = ""
    """A and B as the diagnosis names them (labels, for people)."""
    target: str = ""
    schema: str = SCHEMA
