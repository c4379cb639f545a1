"""Diagnose: probe A -> B while counters and the kernel drop tracer watch, then correlate.

    from vnetdiag.diagnose import diagnose
    run = diagnose(source="vm1", target="vm3", pattern="tcp-rr", streams=16, duration_s=5)
    run.diagnosis.verdicts[0]

One window: counters are read in every namespace just before and just after the
probe, the tracer runs across it, and the server at B reports its own TCP
counters. What cannot run (no tracefs, a path that cannot be resolved) is said
in ``notes`` and the rest still runs.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from vnetdiag.analyze.correlate import correlate
from vnetdiag.analyze.deltas import delta as counter_delta
from vnetdiag.analyze.symptom import symptom_of
from vnetdiag.collect.netfilter import read_drop_rules, rule_deltas
from vnetdiag.collect.routes import read_routes
from vnetdiag.errors import BadInputError, VnetdiagError
from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.bundle import Bundle, ProbeFlows, RuleDelta
from vnetdiag.model.diagnosis import Diagnosis, PathHop
from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.handshake import HANDSHAKE_PATTERNS, HandshakeResult
from vnetdiag.model.probe import ProbeResult
from vnetdiag.model.tracing import TraceAnalysis
from vnetdiag.report.summary import counted
from vnetdiag.model.namespaces import Namespace
from vnetdiag.naming import Endpoint, endpoint
from vnetdiag.system.privileges import require_root

DIAGNOSE_PORT: int | None = None
"""None: a port the kernel picks for each run, so packets of an earlier run's
connections (orphaned sockets still resending) are never taken for this probe's."""
_CONNECT_TIMEOUT_S = 5.0
_GRACE_S = 1.5
_CAPTURE_PACKETS = 200_000  # per device: a bounded capture, ~128 bytes each


def _tcp_moves(moved, inodes: set[int]) -> dict[str, int]:
    """TCP retransmission counters that moved in the two endpoints' namespaces."""
    out: dict[str, int] = {}
    for n in moved.namespaces:
        if n.netns_inode in inodes:
            for _section, m in n.snmp:
                if m.name in ("RetransSegs", "TCPSynRetrans"):
                    out[m.name] = out.get(m.name, 0) + m.delta
    return out


@dataclass(frozen=True, kw_only=True)
class DiagnoseRun:
    """The diagnosis and the raw material it was drawn from (for reports)."""

    diagnosis: Diagnosis
    probe: ProbeResult | None
    """None when the probe could not run at all (B unreachable): see notes."""
    captures: dict = field(default_factory=dict)
    """{"netns:device": PcapReport} of the bounded captures at both ends (--capture)."""
    before: CounterSnapshot
    after: CounterSnapshot
    trace: TraceAnalysis | None
    drops: DropTraceResult | None = None
    """What the drop tracer saw (either backend); ``.backend`` says which ran."""
    bundle: Bundle | None = None
    """Everything the verdicts were drawn from: save it to replay them."""
    handshake: HandshakeResult | None = None
    """The server-less probe's result, when B was a far end (a VM's guest): see diagnose_far."""


def _with_address(e: Endpoint, topo) -> Endpoint:
    """Fill in the namespace's first global address from the topology (IPv4 first)."""
    if e.address:
        return e
    from vnetdiag.topology.path import default_address

    address = default_address(topo, e.ns.inode)
    if address is None:
        raise BadInputError(f"namespace {e.label} has no global address to probe",
                            hint=f"give one: {e.text}:ADDRESS")
    return dataclasses.replace(e, address=address)


def _path(collector, snap: CounterSnapshot, a: Endpoint, b: Endpoint, notes: list[str],
          far: bool = False) -> tuple[PathHop, ...]:
    """Devices from A to B and back, from the topology of ``snap`` (taken after the
    probe, so the bridges' forwarding databases have learned the endpoints). To a
    far end (a VM's guest) one way only: the way back is the way there reversed."""
    from vnetdiag.paths import round_trip

    try:
        results = round_trip(collector, a, b, snap=snap, one_way=far)
    except VnetdiagError as exc:
        notes.append(f"path not resolved: {exc}")
        return ()
    mtu = {ic.interface.ref: ic.interface.mtu for ic in snap.interfaces}
    labels = {n.inode: n.label for n in snap.namespaces}
    hops: list[PathHop] = []
    for result, direction in zip(results, ("forward", "reverse")):
        if not result.complete:
            why = result.stopped or "incomplete"
            flood = f" (flood candidates: {', '.join(result.flood_candidates)})" if result.flood_candidates else ""
            notes.append(f"path {direction} {result.source} -> {result.destination}: {why}{flood}")
        for h in result.hops:
            # A device appears once per crossing even when the walk notes two roles (egress, encap).
            if h.ref is None or (hops and (hops[-1].netns_inode, hops[-1].device, hops[-1].direction)
                                 == (h.netns_inode, h.name, direction)):
                continue
            hops.append(PathHop(netns=labels.get(h.netns_inode, h.netns_name), netns_inode=h.netns_inode,
                                device=h.name, kind=h.kind,
                                mtu=mtu.get(h.ref), direction=direction))
    if far and hops:
        hops += [dataclasses.replace(h, direction="reverse") for h in reversed(hops)]
        notes.append(f"the way back from {b.lab_node or b.text} is taken as the way there reversed "
                     "(its routes cannot be read)")
    return tuple(hops)


def _capture_targets(a: Endpoint, b: Endpoint, topo, lookup, notes: list[str]) -> list[tuple[Namespace, str]]:
    """Each end's device towards the other, from the kernel's route lookup."""
    names = {(i.ref.netns_inode, i.ref.ifindex): i.name for i in topo.interfaces}
    targets = []
    for here, there in ((a, b), (b, a)):
        route = lookup(here.ns.inode, there.address)
        dev = names.get((here.ns.inode, route.oif)) if route is not None and route.oif else None
        if dev is None:
            notes.append(f"no capture at {here.label}: no route to {there.address}")
        else:
            targets.append((here.ns, dev))
    return targets


def diagnose(*, source: str, target: str, pattern: str = "tcp-rr", streams: int = 16, duration_s: float = 5.0,
             warmup_s: float = 0.5, request_bytes: int = 1, response_bytes: int = 1, trace: bool = True,
             capture: bool = False, backend: str = "auto",
             port: int | None = DIAGNOSE_PORT, progress: Callable[[str], None] | None = None,
             stop: threading.Event | None = None) -> DiagnoseRun:
    """Probe ``source`` -> ``target`` while counters, rules and the drop tracer
    (``backend``: auto, ebpf, tracefs) watch; correlate into ranked verdicts."""
    require_root("diagnose")
    say = progress or (lambda _m: None)
    from vnetdiag.collect import Collector
    from vnetdiag.probe.client import run_probe
    from vnetdiag.probe.server import Server

    from vnetdiag import diagnose_far

    a = endpoint(source)
    notes: list[str] = []
    with ExitStack() as stack:
        collector = stack.enter_context(Collector())
        # A far end (a VM's guest, an address no namespace here owns) cannot run
        # our server: it is probed with handshakes its kernel answers.
        b, far = diagnose_far.target(target, a, collector)
        b_label = (b.lab_node or b.text) if far else b.label  # a bare address is its own label
        if not far and a.ns.inode == b.ns.inode:
            raise BadInputError(f"{source} and {target} are the same namespace", hint="diagnose two namespaces")
        if far and capture:
            notes.append(f"no capture towards {b_label}: it is a far end (the capture runs at both ends)")
            capture = False
        targets: list[tuple[str, str]] = []
        if not (a.address and b.address) or capture:
            from vnetdiag.topology import discover
            from vnetdiag.topology.routes import kernel_lookup

            topo = discover(collector.snapshot(), collector.pool)
            a, b = _with_address(a, topo), _with_address(b, topo)
            if capture:
                targets = _capture_targets(a, b, topo, kernel_lookup(collector.pool), notes)
        guest_port = diagnose_far.guest_server_port(target) if far else None
        server: Server | None = None
        if far and guest_port is not None and pattern not in HANDSHAKE_PATTERNS:
            # A lab VM whose guest runs our server: probed like a namespace, its inside still unseen.
            notes.append(f"{b_label} is a VM: probed vnetdiag's server in its guest (port {guest_port})")
            port = port or guest_port
        elif far:
            if pattern not in HANDSHAKE_PATTERNS:
                notes.append(f"{b_label} is a far end (vnetdiag's server cannot run there): probed with tcp-syn "
                             f"handshakes instead of {pattern}")
                pattern = "tcp-syn"
            port = port or diagnose_far.CLOSED_PORT
        elif pattern in HANDSHAKE_PATTERNS:
            raise BadInputError(f"--pattern {pattern} is for a far end (a VM's guest, an address no namespace owns)",
                                hint=f"towards {b_label} use tcp-rr, tcp-crr or udp-rr, or vnetdiag handshake")
        else:
            server = Server(bind=b.address, port=port or 0, netns=b.ns.path)
            port = server.start()[1]
            stack.callback(server.stop)
            server.serve_in_thread()
        flows = ProbeFlows(proto=17 if pattern == "udp-rr" else 1 if pattern == "icmp-echo" else 6,
                           client=a.address, server=b.address, server_port=port if pattern != "icmp-echo" else 0)
        tracer = _start_trace(stack, notes, backend, flows) if trace else None
        before = collector.snapshot()
        rules_before, rule_problems = read_drop_rules(before.namespaces)
        ends = {e.ns.inode for e in (a, b) if e.ns is not None}
        nft = _start_nftrace(stack, notes, before, ends, flows) if trace else None
        say(f"probe {pattern} x{streams} from {a.label} to {b_label} ({b.address}) for {duration_s:g} s")
        probe = failure = None
        # The window ends on time: transactions still waiting out an RTO backoff
        # after it are stopped (their streams are counted up to the stop).
        stop = stop or threading.Event()
        overtime = threading.Event()

        def end_window() -> None:
            overtime.set()
            stop.set()

        deadline = threading.Timer(warmup_s + duration_s + _GRACE_S, end_window)
        deadline.daemon = True
        stack.callback(deadline.cancel)

        started_ns: list[int] = []

        def on_phase(phase: str) -> None:
            if phase == "start":
                started_ns.append(time.monotonic_ns())
                deadline.start()

        outcome: dict = {}

        serverless = pattern in HANDSHAKE_PATTERNS

        def probe_window() -> None:
            if serverless:
                from vnetdiag.probe.handshake_window import run_window

                on_phase("start")
                outcome["handshake"] = run_window(
                    b.address, pattern=pattern, port=port, streams=streams, duration_s=warmup_s + duration_s,
                    interval_s=diagnose_far.ATTEMPT_INTERVAL_S, timeout_s=diagnose_far.ATTEMPT_TIMEOUT_S[pattern],
                    netns=a.ns.path, stop=stop)
                return
            try:
                outcome["probe"] = run_probe(
                    b.address, port=port, pattern=pattern, streams=streams, duration_s=duration_s,
                    warmup_s=warmup_s, request_bytes=request_bytes, response_bytes=response_bytes, netns=a.ns.path,
                    stop=stop, connect_timeout_s=_CONNECT_TIMEOUT_S, on_phase=on_phase)
            except VnetdiagError as exc:
                # B unreachable is a symptom too: the counters and the tracer
                # watched the attempt, so the window still has evidence of why.
                outcome["failure"] = exc
                notes.append(f"the probe could not run: {exc.message}")

        captures: dict = {}
        if targets:
            from vnetdiag.capture import capture_and_analyze

            say(f"capturing on {', '.join(f'{ns.label}:{dev}' for ns, dev in targets)}")
            captures = capture_and_analyze(targets, while_running=probe_window, max_packets=_CAPTURE_PACKETS)
        else:
            probe_window()
        if server is not None:
            # Before the tracer stops: the connections it still holds are reset
            # inside the window, so every packet of the probe's flows is traced.
            server.stop()
        probe, failure = outcome.get("probe"), outcome.get("failure")
        after = collector.snapshot()
        rules_after, _ = read_drop_rules(after.namespaces)
        rule_traces = nft.stop() if nft is not None else ()
        notes += nft.notes if nft is not None else []
        path = _path(collector, after, a, b, notes, far=far)
        on_path = {h.netns_inode for h in path}
        routes, route_problems = read_routes(ns for ns in after.namespaces if ns.inode in on_path)
        notes += route_problems
        say(f"path {a.label} -> {b_label}: {' -> '.join(h.device for h in path if h.direction == 'forward') or '?'}")
    # Leaving the block stopped the tracer, the collector and the server.
    drops = tracer.result if tracer is not None else None
    analysis = drops.analysis if drops is not None and drops.backend == "tracefs" else None
    if drops is not None:
        notes.append(_backend_note(drops))
    if probe is not None and probe.interrupted:
        notes.append(f"streams still waiting {_GRACE_S:g} s after the window were stopped (a transaction in "
                     "RTO backoff); the slowest tails may be cut short" if overtime.is_set() else
                     f"interrupted: {probe.duration_s:.1f} s of {duration_s:g} s were measured")
    for label, report in captures.items():
        sigs = counted(report.signatures, count_first=True) if report.signatures else ""
        notes.append(f"capture at {label}: {report.capture.packets} packets, {len(report.retransmissions)} "
                     f"retransmissions{f' ({sigs})' if sigs else ''}")
    if analysis is not None and not analysis.completeness.complete:
        notes.append(f"the tracer lost {analysis.completeness.events_lost} events "
                     f"({analysis.completeness.lost_share:.1%}): traced counts may be low")
    if drops is not None and drops.loss.lost:
        notes.append(f"the eBPF tracer lost {drops.loss.lost} per-packet records: the probe's counts may be low")
    if drops is not None and drops.loss.missed:
        notes.append(f"the kernel skipped the eBPF tracer at least {drops.loss.missed} times (another BPF program "
                     "was running on that CPU): those drops are neither counted nor recorded, so counts may be low")
    notes += rule_problems
    # Namespaces that came and went during the window (a busy host's containers) are one note.
    gone = [p.where for p in after.problems if "vanished" in p.what]
    if gone:
        notes.append(f"{len(gone)} namespaces vanished while the counters were read: {', '.join(gone[:5])}"
                     + (" ..." if len(gone) > 5 else ""))
    for problem in after.problems:
        if "vanished" not in problem.what:
            notes.append(f"counters not read at {problem.where}: {problem.what}")
    moved = counter_delta(before, after)
    window = outcome.get("handshake")
    if serverless:
        from vnetdiag.analyze.far_end import handshake_symptom

        symptom = handshake_symptom(window.result if window else None, pattern=pattern,
                                    tcp_moves=_tcp_moves(moved, {a.ns.inode}))
    else:  # a far end's TCP counters are its own kernel's, not in b.ns (the hypervisor's)
        symptom = symptom_of(probe, pattern=pattern, streams=streams,
                             tcp_moves=_tcp_moves(moved, {a.ns.inode} if far else {a.ns.inode, b.ns.inode}))
    # The probe starts its streams 20 ms after "start", then warms up: the measured
    # window, in which slow transactions are timed, begins after that.
    window_start_ns = started_ns[0] + 20_000_000 + int(warmup_s * 1e9) if started_ns else None
    tails = tuple((s.at_s - s.latency_us / 1e6, s.at_s) for s in probe.slow) if probe is not None else ()
    if window is not None:  # handshakes time their whole window: no warm-up to skip
        window_start_ns = window.started_ns
        tails = tuple(((t0 - window.started_ns) / 1e9, (t1 - window.started_ns) / 1e9) for t0, t1 in window.slow_ns)
    shortfall = failure.message if failure is not None else (probe.shortfall if probe is not None else None)
    bundle = Bundle(symptom=symptom, path=path, before=before, after=after,
                    rules=tuple(RuleDelta(rule=r, packets=n) for r, n in rule_deltas(rules_before, rules_after)),
                    rule_traces=rule_traces, routes=routes,
                    trace=analysis, drops=dataclasses.replace(drops, analysis=None) if drops is not None else None,
                    probe=flows, tails=tails, handshake=window.result if window is not None else None,
                    window_start_ns=window_start_ns, notes=tuple(notes),
                    shortfall=shortfall, source=a.label, target=b_label)
    if far and serverless:
        from vnetdiag.analyze.far_end import far_shortfall, neighbour_note

        # Unanswered handshakes that nothing on the host path explains: the loss is in the guest.
        verdicts = correlate(bundle)[0]
        why = far_shortfall(verdicts, symptom, window.result if window else None, path, before, after)
        arp = neighbour_note(verdicts, b.address)
        bundle = dataclasses.replace(bundle, shortfall=why or bundle.shortfall,
                                     notes=bundle.notes + ((arp,) if arp else ()))
    return diagnosis_of(bundle, source=a.label, target=b_label, probe=probe, failure=failure, captures=captures)


def diagnosis_of(bundle: Bundle, *, source: str | None = None, target: str | None = None,
                 probe: ProbeResult | None = None,
                 failure: VnetdiagError | None = None, captures: dict | None = None) -> DiagnoseRun:
    """The verdicts of a bundle (a fresh one, or one read back from a file)."""
    verdicts, found_notes = correlate(bundle)
    if failure is not None and not verdicts:
        raise failure  # nothing in the kernel explains it: say so plainly
    window_s = probe.duration_s if probe is not None else bundle.after.taken_monotonic_s - bundle.before.taken_monotonic_s
    diagnosis = Diagnosis(source=source or bundle.source, target=target or bundle.target,
                          pattern=bundle.symptom.pattern, window_s=window_s,
                          symptom=bundle.symptom, path=bundle.path, verdicts=verdicts,
                          notes=bundle.notes + found_notes, shortfall=bundle.shortfall,
                          trace_complete=(bundle.trace.completeness.complete if bundle.trace is not None else
                                          (bundle.drops.loss.complete if bundle.drops is not None else None)),
                          backend=bundle.drops.backend if bundle.drops is not None else
                          ("tracefs" if bundle.trace is not None else None))
    return DiagnoseRun(diagnosis=diagnosis, probe=probe, before=bundle.before, after=bundle.after,
                       trace=bundle.trace, drops=bundle.drops, captures=captures or {}, bundle=bundle,
                       handshake=bundle.handshake)


def _backend_note(drops: DropTraceResult) -> str:
    if drops.backend == "ebpf":
        return "drops traced with eBPF: each dropped packet's namespace, device and flow read from the kernel"
    return ("drops traced with tracefs" + (f" ({drops.note})" if drops.note else "") +
            ": no packet headers, so drops are placed by device and the probe's own cannot be told apart")


def _start_nftrace(stack: ExitStack, notes: list[str], snap, ends: set[int], flows: ProbeFlows):
    """Netfilter's own tracing of the probe's packets where a dropping rule is
    written in the namespaces joined to A and B (TCP and UDP probes); a note,
    not a failure, when it cannot run."""
    from vnetdiag.collect import nftrace

    if flows.proto not in (6, 17) or shutil.which("nft") is None:
        return None
    reach = nftrace.connected((ic.interface for ic in snap.interfaces), ends)
    where = nftrace.dropping_namespaces(snap.namespaces, reach)
    if not where:
        return None
    t = nftrace.NftTrace(where, flows)
    try:
        t.start()
    except VnetdiagError as exc:
        notes.append(f"netfilter tracing unavailable ({exc.message}): rules are placed by their counters")
        return None
    stack.callback(t.close)
    return t


def _start_trace(stack: ExitStack, notes: list[str], backend: str, flows: ProbeFlows):
    from vnetdiag.collect.droptrace import DropTrace

    # Per-packet records for the probe's flows only (both directions); the rest counted in the kernel.
    which = "icmp or icmp6" if flows.proto == 1 else f"port {flows.server_port}"  # echo has no port
    tracer = DropTrace(backend=backend, filter=f"host {flows.client} and host {flows.server} and ({which})")
    try:
        tracer.start()
    except VnetdiagError as exc:
        if backend == "ebpf":
            raise
        notes.append(f"kernel drop tracing unavailable: {exc}")
        return None
    stack.callback(tracer.stop)
    return tracer


def document(run: DiagnoseRun) -> dict:
    """The ``vnetdiag.diagnosis/1`` document."""
    from dataclasses import asdict

    from vnetdiag.model.diagnosis import SCHEMA

    d = run.diagnosis
    return {"schema": SCHEMA, "source": d.source, "target": d.target, "pattern": d.pattern,
            "window_s": round(d.window_s, 3), "problem_found": d.problem_found,
            "symptom": {**asdict(d.symptom), "probe": run.probe.as_document() if run.probe else None,
                        "handshake": run.handshake.as_document() if run.handshake else None},
            "path": [asdict(h) for h in d.path], "verdicts": [asdict(v) for v in d.verdicts],
            "notes": list(d.notes), "trace_complete": d.trace_complete, "backend": d.backend,
            "measured": d.measured, "shortfall": d.shortfall,
            "captures": {label: {"packets": r.capture.packets, "retransmissions": len(r.retransmissions),
                                 "signatures": r.signatures} for label, r in run.captures.items()}}
