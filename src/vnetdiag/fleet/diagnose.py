"""Diagnose across hosts: probe from HOST:A to HOST:B, every host on the path watching.

    from vnetdiag.fleet.diagnose import diagnose_fleet
    run = diagnose_fleet(source="hv1:vm1", target="hv3:vm3", hosts_file="hosts.ini")
    run.diagnosis.verdicts[0].netns        # "hv2:hv2-ns" - the host comes first

One window, as in one-host diagnose (vnetdiag/diagnose.py), over agents started
through ssh (fleet/coordinator.py): B's agent starts the probe server, every
host's agent starts a drop trace and snapshots counters and firewall rules,
A's agent runs the probe, every host snapshots again and stops its tracer.
Each host's records become one ``Bundle`` (its own clock: the probe's start is
carried over with the measured offsets) and are correlated on their own; the
verdicts are then ranked across hosts, each naming its host in the namespace
label and in its first piece of evidence.

Which hosts watch: A's and B's, plus ``via`` (or, when a hosts file is given and
``via`` is not, every host in it). On A's and B's hosts the path is walked by
the agent (as far as that host sees the packet: to its tunnel or its wire);
on a transit host the path is the devices that carried at least half the
probe's packets in the window (a router does not know the guests' addresses).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vnetdiag.errors import BadInputError, UsageError, VnetdiagError
from vnetdiag.fleet import hosts as hosts_mod
from vnetdiag.fleet.coordinator import Fleet
from vnetdiag.fleet.transport import AgentDied
from vnetdiag.model.bundle import Bundle, ProbeFlows, RuleDelta
from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.diagnosis import Diagnosis, Evidence, PathHop, Verdict
from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.fleet import (
    ClockOffset,
    Host,
    HostSnapshot,
    ProbeAnswer,
    TopologyAnswer,
    TraceAnswer,
)
from vnetdiag.model.plain import from_plain
from vnetdiag.model.probe import ProbeResult
from vnetdiag.model.tracing import TraceAnalysis

DIAGNOSE_PORT = 7421
_GRACE_S = 1.5
_TUNNEL_KINDS = ("vxlan", "geneve", "gre", "gretap", "ipip", "sit", "wireguard")
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, kw_only=True)
class HostRecords:
    """What one host's agent saw in the window."""

    host: Host
    before: CounterSnapshot
    after: CounterSnapshot
    rules: tuple[RuleDelta, ...]
    trace: TraceAnalysis | None
    drops: DropTraceResult | None
    path: tuple[PathHop, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FleetRun:
    diagnosis: Diagnosis
    probe: ProbeResult | None
    hosts: tuple[HostRecords, ...]
    offsets: dict[str, ClockOffset] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    """Where the time went: "connect" (ssh + agent start, the slowest host), "window", "collect", "total"."""
    round_trips: dict[str, int] = field(default_factory=dict)
    """Requests answered by each host's agent."""
    agent_pids: dict[str, int] = field(default_factory=dict)


def _correlate(bundle: Bundle):
    """The lead's bundle correlator when it is there, else the one-host diagnose's."""
    try:
        from vnetdiag.analyze.correlate import correlate
    except ImportError:
        correlate = None
    if correlate is not None:
        return correlate(bundle)
    from vnetdiag.analyze.deltas import delta as counter_delta
    from vnetdiag.analyze.verdicts import correlate as old

    return old(symptom=bundle.symptom, path=bundle.path, delta=counter_delta(bundle.before, bundle.after),
               before=bundle.before, after=bundle.after, trace=bundle.trace,
               rules=[(r.rule, r.packets) for r in bundle.rules], tails=bundle.tails,
               window_start_ns=bundle.window_start_ns)


def _symptom_of(*args, **kw):
    try:
        from vnetdiag.analyze.symptom import symptom_of
    except ImportError:
        from vnetdiag.analyze.verdicts import symptom_of
    return symptom_of(*args, **kw)


def _hops(paths, snap: CounterSnapshot) -> tuple[PathHop, ...]:
    """PathHops (both directions: the way back crosses the same devices on this host)."""
    mtu = {ic.interface.ref: ic.interface.mtu for ic in snap.interfaces}
    labels = {n.inode: n.label for n in snap.namespaces}
    out: list[PathHop] = []
    for result in paths:
        for direction in ("forward", "reverse"):
            encapsulated = False
            for h in result.hops:
                if h.ref is None or any((x.netns_inode, x.device, x.direction) == (h.netns_inode, h.name, direction)
                                        for x in out):
                    continue
                # Past the tunnel the wire carries the guest's packet plus the tunnel's
                # headers: its MTU is not the guests' to compare.
                out.append(PathHop(netns=labels.get(h.netns_inode, h.netns_name or "?"), netns_inode=h.netns_inode,
                                   device=h.name, kind=h.kind, mtu=None if encapsulated else mtu.get(h.ref),
                                   direction=direction))
                encapsulated = encapsulated or h.kind in _TUNNEL_KINDS
    return tuple(out)


def _transit_hops(before: CounterSnapshot, after: CounterSnapshot, packets: int) -> tuple[PathHop, ...]:
    """The devices of a transit host that carried at least ``packets`` in the window."""
    if packets <= 0:
        return ()
    was = {ic.interface.ref: ic for ic in before.interfaces}
    labels = {n.inode: n.label for n in after.namespaces}
    out = []
    for ic in after.interfaces:
        prev = was.get(ic.interface.ref)
        if prev is None or ic.interface.kind in ("loopback",) or ic.interface.name == "lo":
            continue
        moved = max(ic.stats.get("rx_packets", 0) - prev.stats.get("rx_packets", 0),
                    ic.stats.get("tx_packets", 0) - prev.stats.get("tx_packets", 0))
        if moved >= packets:
            i = ic.interface
            for direction in ("forward", "reverse"):
                # mtu None: a transit host carries the tunnel's packets, larger than the guests'.
                out.append(PathHop(netns=labels.get(i.ref.netns_inode, "?"), netns_inode=i.ref.netns_inode,
                                   device=i.name, kind=i.kind, mtu=None, direction=direction))
    return tuple(out)


def _tcp_moves(before: CounterSnapshot, after: CounterSnapshot, inode: int) -> dict[str, int]:
    from vnetdiag.analyze.deltas import delta as counter_delta

    out: dict[str, int] = {}
    for n in counter_delta(before, after).namespaces:
        if n.netns_inode == inode:
            for _section, m in n.snmp:
                if m.name in ("RetransSegs", "TCPSynRetrans"):
                    out[m.name] = out.get(m.name, 0) + m.delta
    return out


def _named(v: Verdict, host: str) -> Verdict:
    """The verdict with its host in the namespace label and first in its evidence."""
    where = Evidence(source="config", text=f"seen by the agent on host {host}")
    return dataclasses.replace(v, netns=f"{host}:{v.netns}" if v.netns else host, evidence=(where, *v.evidence))


def rank_across(per_host: Sequence[tuple[str, Sequence[Verdict]]]) -> tuple[Verdict, ...]:
    """One ranking of every host's verdicts: on the path first, then confidence, then count."""
    merged = [_named(v, host) for host, verdicts in per_host for v in verdicts]
    merged.sort(key=lambda v: (v.on_path, v.confidence, v.exact_match, v.count), reverse=True)
    return tuple(dataclasses.replace(v, rank=i + 1) for i, v in enumerate(merged))


def plan(source: str, target: str, *, hosts_file: str | None = None, via: Sequence[str] = ()) -> tuple[
        Host, str, Host, str, list[Host]]:
    """(A's host, A, B's host, B, every host that watches) from the user's words."""
    inventory = hosts_mod.load(hosts_file) if hosts_file else None
    a = hosts_mod.split_host_endpoint(source, inventory)
    b = hosts_mod.split_host_endpoint(target, inventory)
    if a is None or b is None:
        bad = source if a is None else target
        raise UsageError(f"{bad} does not name a host",
                         hint="HOST:NAMESPACE[:ADDRESS] with HOST from --hosts FILE or user@host, on both ends")
    watch = {a[0].name: a[0], b[0].name: b[0]}
    extra = [hosts_mod.resolve(v, inventory) for v in via] if via else list((inventory or {}).values())
    for h in extra:
        watch.setdefault(h.name, h)
    return a[0], a[1], b[0], b[1], list(watch.values())


def diagnose_fleet(*, source: str, target: str, hosts_file: str | None = None, via: Sequence[str] = (),
                   pattern: str = "tcp-rr", streams: int = 16, duration_s: float = 5.0, warmup_s: float = 0.5,
                   request_bytes: int = 1, response_bytes: int = 1, trace: bool = True, port: int = DIAGNOSE_PORT,
                   backend: str = "auto", progress: Callable[[str], None] | None = None,
                   transports: dict | None = None) -> FleetRun:
    say = progress or (lambda _m: None)
    t_start = time.monotonic()
    host_a, ep_a, host_b, ep_b, watch = plan(source, target, hosts_file=hosts_file, via=via)
    notes: list[str] = []
    timings: dict[str, float] = {}
    say(f"starting agents on {', '.join(h.name for h in watch)}")
    fleet = Fleet(watch, transports=transports)
    try:
        fleet.open()
        timings["connect"] = time.monotonic() - t_start
        run = _window(fleet, host_a, ep_a, host_b, ep_b, watch, notes, timings, say, pattern=pattern,
                      streams=streams, duration_s=duration_s, warmup_s=warmup_s, request_bytes=request_bytes,
                      response_bytes=response_bytes, trace=trace, port=port, backend=backend)
    except VnetdiagError as exc:
        fleet.close()
        if fleet.notes:
            exc.message += "; " + "; ".join(fleet.notes)
        raise
    except BaseException:
        fleet.close()
        raise
    round_trips = {n: s.round_trips for n, s in fleet.sessions.items()}
    pids = {n: s.hello.pid for n, s in fleet.sessions.items()}
    offsets = dict(fleet.offsets)
    t_close = time.monotonic()
    fleet.close()
    timings["close"] = time.monotonic() - t_close
    timings["total"] = time.monotonic() - t_start
    return dataclasses.replace(run, offsets=offsets, timings_s=timings, round_trips=round_trips, agent_pids=pids,
                               diagnosis=dataclasses.replace(run.diagnosis,
                                                             notes=run.diagnosis.notes + tuple(fleet.notes)))


def endpoint(fleet: Fleet, host: Host, text: str) -> tuple[str, str]:
    """(namespace text, address) of an endpoint on ``host``, the address from its topology when not given."""
    from vnetdiag.model.namespaces import split_endpoint
    from vnetdiag.topology.path import default_address, namespace_of

    try:
        ns_text, address = split_endpoint(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if address:
        return ns_text, address
    answer = from_plain(TopologyAnswer, fleet.call(host.name, "topology", full=True))
    try:
        inode = namespace_of(answer.topology, ns_text)
    except VnetdiagError as exc:
        raise BadInputError(f"{host.name}: {exc.message}", hint=exc.hint) from None
    address = default_address(answer.topology, inode)
    if address is None:
        raise BadInputError(f"{host.name}:{ns_text} has no global address to probe",
                            hint=f"give one: {host.name}:{ns_text}:ADDRESS")
    return ns_text, address


def _window(fleet: Fleet, host_a: Host, ep_a: str, host_b: Host, ep_b: str, watch: list[Host], notes: list[str],
            timings: dict, say, *, pattern, streams, duration_s, warmup_s, request_bytes, response_bytes, trace,
            port, backend) -> FleetRun:
    ns_a, addr_a = endpoint(fleet, host_a, ep_a)
    ns_b, addr_b = endpoint(fleet, host_b, ep_b)
    names = [h.name for h in watch]
    fleet.call(host_b.name, "serve_start", netns=ns_b, bind=addr_b, port=port)
    traced: set[str] = set()
    t0 = time.monotonic()
    if trace:
        # Per-packet records for the probe's flows only (both directions); the rest counted in the kernel.
        started = fleet.call_each("trace_start", names, backend=backend,
                                  filter=f"host {addr_a} and host {addr_b} and port {port}")
        for name, got in started.items():
            if isinstance(got, AgentDied):
                raise got
            if isinstance(got, VnetdiagError):
                notes.append(f"{name}: kernel drop tracing unavailable: {got.message}")
            else:
                traced.add(name)
    timings["trace_start"] = time.monotonic() - t0
    before = {n: from_plain(HostSnapshot, v) for n, v in fleet.call_all("snapshot", names).items()}
    say(f"probe {pattern} x{streams} from {host_a.name}:{ns_a} to {host_b.name}:{ns_b} ({addr_b}) "
        f"for {duration_s:g} s")
    t_window = time.monotonic()
    answer = from_plain(ProbeAnswer, fleet.session(host_a.name).call(
        "probe", timeout_s=warmup_s + duration_s + _GRACE_S + _CONNECT_TIMEOUT_S + 30, netns=ns_a, target=addr_b,
        port=port, pattern=pattern, streams=streams, duration_s=duration_s, warmup_s=warmup_s,
        request_bytes=request_bytes, response_bytes=response_bytes, connect_timeout_s=_CONNECT_TIMEOUT_S,
        grace_s=_GRACE_S))
    timings["window"] = time.monotonic() - t_window
    t_collect = time.monotonic()
    after = {n: from_plain(HostSnapshot, v) for n, v in fleet.call_all("snapshot", names).items()}
    traces = {n: from_plain(TraceAnswer, v) for n, v in fleet.call_all("trace_stop", sorted(traced)).items()}
    fleet.call(host_b.name, "serve_stop", port=port)
    paths = {host_a.name: from_plain(TopologyAnswer, fleet.call(host_a.name, "topology", paths=[[ns_a, addr_b]])),
             host_b.name: from_plain(TopologyAnswer, fleet.call(host_b.name, "topology", paths=[[ns_b, addr_a]]))}
    timings["collect"] = time.monotonic() - t_collect
    say(f"path {host_a.name}:{ns_a} -> {host_b.name}:{ns_b}: {len(watch)} hosts watched")

    probe = answer.result
    if probe is None:
        notes.append(f"the probe could not run: {answer.failure}")
    from vnetdiag.collect.netfilter import rule_deltas

    a_inode = next((n.inode for n in after[host_a.name].snapshot.namespaces if n.label == ns_a or n.name == ns_a), 0)
    b_inode = next((n.inode for n in after[host_b.name].snapshot.namespaces if n.label == ns_b or n.name == ns_b), 0)
    moves: dict[str, int] = {}
    for name, inode in ((host_a.name, a_inode), (host_b.name, b_inode)):
        for k, v in _tcp_moves(before[name].snapshot, after[name].snapshot, inode).items():
            moves[k] = moves.get(k, 0) + v
    symptom = _symptom_of(probe, pattern=pattern, streams=streams, tcp_moves=moves)
    # The measured window starts 20 ms after the probe's "start" phase plus its
    # warm-up (as in one-host diagnose), read on A's clock and carried to each host's.
    start_a = answer.started_mono_ns + 20_000_000 + int(warmup_s * 1e9) if answer.started_mono_ns else None
    tails = tuple((s.at_s - s.latency_us / 1e6, s.at_s) for s in probe.slow) if probe is not None else ()
    transit_packets = max(symptom.transactions // 2, 1) if probe is not None else 0
    records: list[HostRecords] = []
    per_host: list[tuple[str, tuple[Verdict, ...]]] = []
    for h in watch:
        b0, b1 = before[h.name], after[h.name]
        if h.name in paths:
            hops = _hops(paths[h.name].paths, b1.snapshot)
        else:
            hops = _transit_hops(b0.snapshot, b1.snapshot, transit_packets)
        host_notes = [f"{h.name}: {p}" for p in b1.problems] + [
            f"{h.name}: counters not read at {p.where}: {p.what}" for p in b1.snapshot.problems]
        rules = tuple(RuleDelta(rule=r, packets=n) for r, n in rule_deltas(b0.rules, b1.rules))
        answer_t = traces.get(h.name)
        tr = answer_t.analysis if answer_t is not None else None
        drops = answer_t.drops if answer_t is not None and answer_t.drops.backend == "ebpf" else None
        if tr is not None and not tr.completeness.complete:
            host_notes.append(f"{h.name}: the tracer lost {tr.completeness.events_lost} events")
        if answer_t is not None and answer_t.drops.note:
            host_notes.append(f"{h.name}: {answer_t.drops.note}")
        bundle = Bundle(symptom=symptom, path=hops, before=b0.snapshot, after=b1.snapshot, rules=rules, trace=tr,
                        drops=drops,
                        probe=ProbeFlows(proto=17 if pattern == "udp-rr" else 6, client=addr_a, server=addr_b,
                                         server_port=port),
                        tails=tails, window_start_ns=fleet.between(host_a.name, h.name, start_a) if start_a else None,
                        notes=tuple(host_notes))
        verdicts, host_off_path = _correlate(bundle)
        per_host.append((h.name, verdicts))
        notes += host_notes + [f"{h.name}: {n}" for n in host_off_path]
        records.append(HostRecords(host=h, before=b0.snapshot, after=b1.snapshot, rules=rules, trace=tr, drops=drops,
                                   path=hops,
                                   notes=tuple(host_notes)))
    verdicts = rank_across(per_host)
    if probe is None and not verdicts:
        raise VnetdiagError(f"the probe from {host_a.name}:{ns_a} to {host_b.name}:{ns_b} could not run: "
                            f"{answer.failure}", hint="is the address right and the server's namespace reachable?")
    path = tuple(dataclasses.replace(hop, netns=f"{r.host.name}:{hop.netns}") for r in records for hop in r.path
                 if hop.direction == "forward")
    for name, off in fleet.offsets.items():
        if abs(off.offset_ns) > 1_000_000_000:
            notes.append(f"{name}: its clock is {off.offset_ns / 1e9:+.3f} s from ours (aligned, +/- "
                         f"{off.rtt_ns / 2e6:.2f} ms)")
    window_s = probe.duration_s if probe is not None else after[host_a.name].snapshot.taken_monotonic_s - \
        before[host_a.name].snapshot.taken_monotonic_s
    diagnosis = Diagnosis(source=f"{host_a.name}:{ns_a}", target=f"{host_b.name}:{ns_b}", pattern=pattern,
                          window_s=window_s, symptom=symptom, path=path, verdicts=verdicts, notes=tuple(notes),
                          trace_complete=all((t.analysis.completeness.complete if t.analysis else t.drops.loss.complete)
                                             for t in traces.values()) if traces else None)
    return FleetRun(diagnosis=diagnosis, probe=probe, hosts=tuple(records))


def document(run: FleetRun) -> dict:
    """The ``vnetdiag.diagnosis/1`` document, with the hosts, their clocks and where the time went."""
    from dataclasses import asdict

    from vnetdiag.model.diagnosis import SCHEMA

    d = run.diagnosis
    return {"schema": SCHEMA, "source": d.source, "target": d.target, "pattern": d.pattern,
            "window_s": round(d.window_s, 3), "problem_found": d.problem_found,
            "symptom": {**asdict(d.symptom), "probe": run.probe.as_document() if run.probe else None},
            "path": [asdict(h) for h in d.path], "verdicts": [asdict(v) for v in d.verdicts],
            "notes": list(d.notes), "trace_complete": d.trace_complete,
            "hosts": [{"name": r.host.name, "destination": r.host.destination,
                       "clock_offset_ns": run.offsets[r.host.name].offset_ns if r.host.name in run.offsets else None,
                       "clock_rtt_ns": run.offsets[r.host.name].rtt_ns if r.host.name in run.offsets else None,
                       "round_trips": run.round_trips.get(r.host.name, 0),
                       "agent_pid": run.agent_pids.get(r.host.name),
                       "path": [f"{h.netns}:{h.device}" for h in r.path if h.direction == "forward"]}
                      for r in run.hosts],
            "timings_s": {k: round(v, 3) for k, v in run.timings_s.items()}}
