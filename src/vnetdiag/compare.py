"""Compare: probe several paths interleaved, say how each is built, and how they differ.

    from vnetdiag.compare import compare, parse_path
    result = compare([parse_path("veth=vm1->vm3"), parse_path("macvtap=vm2->vm3")], duration_s=5)
    [(d.path, d.metric, d.estimate, d.low, d.high) for d in result.differences]

The paths are probed in round-robin slices (``probe/compare.py``); after the
rounds one snapshot of every namespace gives each path's devices both ways
(``paths.round_trip``) and how each device is built (``report/inventory.rows``:
kind, driver, queues, offloads, VFs); ``analyze/difference.py`` gives the
intervals of the differences against the first path.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vnetdiag.analyze.difference import MIN_ROUNDS, PathRounds, differences
from vnetdiag.errors import BadInputError, UsageError, VnetdiagError
from vnetdiag.model.compare import (METRICS, SCHEMA, CompareResult, HopBuild, PathBuild, PathFigures, PathSpec,
                                    Slice)
from vnetdiag.model.probe import HistogramBin
from vnetdiag.naming import Endpoint, endpoint

_ARROW = re.compile(r"\s*(?:->|→)\s*")
PATH_HELP = ("LABEL=FROM->TO: FROM and TO are namespaces in any form or lab nodes, optionally :ADDRESS "
             "(e.g. veth=vm1->vm3, sriov=pid:4242->host:10.0.0.9); LABEL= may be left out")
_LABEL = re.compile(r"[\w.+-]{1,32}")
_HIST_PER_DECADE = 10


def parse_path(text: str) -> PathSpec:
    """``LABEL=FROM->TO`` (or ``FROM->TO``, labelled by itself). The label is
    what comes before the first "=", when that part has no arrow; FROM and TO
    are endpoints as ``vnetdiag.naming.endpoint`` takes them."""
    label, sep, rest = text.partition("=")
    labelled = bool(sep) and not _ARROW.search(label)
    if not labelled:
        label, rest = "", text
    ends = _ARROW.split(rest.strip())
    if len(ends) != 2 or not all(ends):
        raise UsageError(f"--path {text!r}: expected {PATH_HELP.split(':')[0]}", hint=PATH_HELP)
    label = label.strip()
    if labelled and not _LABEL.fullmatch(label):
        raise UsageError(f"--path {text!r}: label {label!r} must be 1-32 letters, digits or . + - _",
                         hint="e.g. --path veth=vm1->vm3")
    return PathSpec(label=label or f"{ends[0]}->{ends[1]}", source=ends[0], target=ends[1])


def _addressed(e: Endpoint, topo) -> Endpoint:
    """The endpoint with its namespace's first global address when none was given."""
    from vnetdiag.topology.path import default_address

    if e.address:
        return e
    address = default_address(topo, e.ns.inode)
    if address is None:
        raise BadInputError(f"namespace {e.label} has no global address to probe", hint=f"give one: {e.text}:ADDRESS")
    return dataclasses.replace(e, address=address)


def _hops(collector, snap, a: Endpoint, b: Endpoint, *, far: bool = False) -> PathBuild:
    """The devices both ways, each with how the inventory says it is built; to a
    far end (a VM's guest) one way: the way back starts inside the guest."""
    from vnetdiag.paths import round_trip
    from vnetdiag.report.inventory import rows as inventory_rows

    try:
        results = round_trip(collector, a, b, snap=snap, one_way=far)
    except VnetdiagError as exc:
        return PathBuild(hops=(), complete=False, notes=(f"path not resolved: {exc}",))
    built = {ic.interface.ref: (ic, row) for ic, row in zip(snap.interfaces, inventory_rows(snap))}
    hops: list[HopBuild] = []
    notes = ["reverse: starts inside the far end, which is not observable from here"] if far else []
    for result, direction in zip(results, ("forward", "reverse")):
        if not result.complete:
            notes.append(f"{direction}: {result.stopped or 'incomplete'}")
        for h in result.hops:
            if h.ref is None or (hops and (hops[-1].netns_inode, hops[-1].device, hops[-1].direction)
                                 == (h.netns_inode, h.name, direction)):
                continue  # one row per device crossed, even when the walk notes two roles there
            ic, row = built.get(h.ref, (None, None))
            roots = [q.kind for q in (ic.qdiscs if ic else ()) if q.parent == "root" and not q.is_class]
            x = ic.interface if ic else None
            hops.append(HopBuild(
                direction=direction, netns=row["namespace"] if row else (h.netns_name or "?"),
                netns_inode=h.netns_inode, device=h.name, ifindex=h.ref.ifindex, kind=(row or {}).get("kind", h.kind or "-"),
                driver=(row or {}).get("driver", "-"), role=h.role, queues=(row or {}).get("queues", "?"),
                qdisc=roots[0] if roots else "", offloads=tuple(filter(None, (row or {}).get("offloads", "").split(","))),
                num_vf=x.num_vf if x else None, details=(row or {}).get("details", "")))
    return PathBuild(hops=tuple(hops), complete=all(r.complete for r in results), notes=tuple(notes))


def shared_edges_us(arrays: Sequence[np.ndarray], per_decade: int = _HIST_PER_DECADE) -> np.ndarray:
    """Log-spaced histogram edges (``per_decade`` a decade, on round values)
    covering every array: the same bins for every path, so they overlay."""
    values = [a for a in arrays if len(a)]
    if not values:
        return np.zeros(0)
    lo = math.floor(math.log10(max(min(float(a.min()) for a in values), 1e-3)) * per_decade)
    hi = math.ceil(math.log10(max(float(a.max()) for a in values)) * per_decade + 1e-9)
    return 10 ** (np.arange(lo, max(hi, lo + 1) + 1) / per_decade)


@dataclass(frozen=True, kw_only=True)
class Where:
    """Where a path's ends were found: the labels and addresses the run used."""

    source_netns: str
    target_netns: str
    client_address: str | None
    server_address: str


def _figures(spec: PathSpec, where: Where, slices: Sequence[Slice], edges: np.ndarray,
             build: PathBuild | None) -> PathFigures:
    from vnetdiag.probe import histograms as H

    latency = np.concatenate([s.latency_us for s in slices]) if slices else np.zeros(0)
    hist = H.new_histogram()
    H.record_many(hist, np.rint(latency * 1000).astype(np.int64))  # ns, as the probe records them
    counts = np.histogram(latency, bins=edges)[0] if len(edges) else []
    duration = sum(s.duration_s for s in slices)
    trials, lost = sum(s.trials for s in slices), sum(s.lost for s in slices)
    tails: dict[str, int] = {}
    for s in slices:
        for k, v in s.tails.items():
            tails[k] = tails.get(k, 0) + v
    return PathFigures(
        label=spec.label, source=spec.source, target=spec.target, source_netns=where.source_netns,
        target_netns=where.target_netns, client_address=where.client_address, server_address=where.server_address,
        slices=len(slices), duration_s=duration,
        transactions=len(latency), rate_per_s=len(latency) / duration if duration > 0 else 0.0,
        latency=H.summarize(hist), trials=trials, lost=lost, loss_rate=lost / trials if trials else 0.0,
        errors=sum(s.errors for s in slices), retrans_segs=sum(s.retrans_segs for s in slices), tails=tails,
        histogram=tuple(HistogramBin(low_us=float(edges[k]), high_us=float(edges[k + 1]), count=int(c))
                        for k, c in enumerate(counts)),
        build=build, shortfalls=tuple(f"round {s.round + 1}: {s.shortfall}" for s in slices if s.shortfall))


def assemble(paths: Sequence[PathSpec], where: Sequence[Where], slices: Sequence[Slice], *, rounds_asked: int,
             slice_s: float, warmup_s: float, pattern: str, streams: int, builds: Sequence[PathBuild | None] = (),
             interrupted: bool = False, level: float = 0.95, resamples: int = 2000,
             seed: int = 0) -> CompareResult:
    """The result of a run from its slices (no I/O: recorded slices give the same result)."""
    builds = list(builds) or [None] * len(paths)
    done = max((s.round + 1 for s in slices), default=0)
    per_path = [[s for s in slices if s.path == i] for i in range(len(paths))]
    edges = shared_edges_us([s.latency_us for s in slices])
    figures = tuple(_figures(p, w, own, edges, build) for p, w, own, build in zip(paths, where, per_path, builds))
    rounds_of = [PathRounds(label=f.label, latency_us=[s.latency_us for s in own], lost=[s.lost for s in own],
                            trials=[s.trials for s in own], transactions=[s.transactions for s in own],
                            duration_s=[s.duration_s for s in own]) for f, own in zip(figures, per_path)]
    diffs, inference = differences(rounds_of, [{m: f.metric(m) for m in METRICS} for f in figures],
                                   level=level, resamples=resamples, seed=seed)
    notes = []
    if interrupted:
        notes.append(f"interrupted: {done} of {rounds_asked} rounds complete")
    if done < MIN_ROUNDS:
        notes.append(f"{done} rounds: too few for intervals (need {MIN_ROUNDS}; give a longer --duration or a "
                     "shorter --slice)")
    return CompareResult(pattern=pattern, streams=streams, slice_s=slice_s, warmup_s=warmup_s, rounds=done,
                         paths=figures, differences=diffs, inference=inference, slices=tuple(slices),
                         interrupted=interrupted, notes=tuple(notes))


def compare(paths: Sequence[PathSpec], *, duration_s: float = 5.0, slice_s: float = 0.5, warmup_s: float = 0.1,
            pattern: str = "tcp-rr", streams: int = 4, request_bytes: int = 1, response_bytes: int = 1,
            level: float = 0.95, resamples: int = 2000, seed: int = 0, describe: bool = True,
            progress: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> CompareResult:
    """Probe ``paths`` in interleaved slices for ``duration_s`` measured seconds
    each (``ceil(duration_s / slice_s)`` rounds, rounded up to whole order
    designs: a multiple of n paths, of 2n for an odd n) and compare them with the first."""
    from vnetdiag import diagnose_far
    from vnetdiag.collect import Collector
    from vnetdiag.model.handshake import HANDSHAKE_PATTERNS
    from vnetdiag.probe.compare import Leg, balanced_rounds, run_interleaved
    from vnetdiag.system.privileges import require_root
    from vnetdiag.topology import discover

    require_root("compare")
    if pattern == "bsp":
        raise UsageError("compare takes tcp-rr, tcp-crr or udp-rr", hint="bsp has no per-transaction latencies")
    if not 0 < level < 1:
        raise UsageError(f"--level {level}: must be between 0 and 1, e.g. 0.95")
    labels = [p.label for p in paths]
    if len(set(labels)) != len(labels):
        raise UsageError(f"two paths are labelled {next(x for x in labels if labels.count(x) > 1)!r}",
                         hint="give each --path its own LABEL=")
    say = progress or (lambda _m: None)
    rounds = balanced_rounds(max(1, math.ceil(duration_s / slice_s - 1e-9)), len(paths))
    with Collector() as collector:
        snap = collector.snapshot()
        ends, far = [], []
        for p in paths:
            a = endpoint(p.source, snap.namespaces)
            b, is_far = diagnose_far.target(p.target, a, collector)
            ends.append((a, b))
            far.append(is_far)
        if not all(a.address and b.address for a, b in ends):
            topo = discover(snap, collector.pool)
            ends = [(_addressed(a, topo), _addressed(b, topo)) for a, b in ends]
        for p, (a, b), is_far in zip(paths, ends, far):
            if a.ns.inode == b.ns.inode and not is_far:
                raise BadInputError(f"path {p.label}: {p.source} and {p.target} are the same namespace",
                                    hint="compare paths between two namespaces")
        if any(far) and pattern not in HANDSHAKE_PATTERNS:
            # One pattern for every path, or the figures would not compare: the far
            # end's kernel answers handshakes, and so does every namespace's.
            say(f"{', '.join(p.label for p, f in zip(paths, far) if f)}: a far end (vnetdiag's server cannot run "
                f"there): every path probed with tcp-syn handshakes instead of {pattern}")
            pattern = "tcp-syn"
        port = diagnose_far.CLOSED_PORT if pattern == "tcp-syn" else None
        legs = [Leg(label=p.label, client_netns=a.ns.path, server_netns=b.ns.path, server_address=b.address,
                    port=port) for p, (a, b) in zip(paths, ends)]
        say(f"{len(paths)} paths, {rounds} rounds of {slice_s:g} s slices ({pattern} x{streams}): "
            + "; ".join(f"{p.label}: {a.label} -> {b.label} ({b.address})" for p, (a, b) in zip(paths, ends)))
        slices, interrupted = run_interleaved(legs, rounds=rounds, slice_s=slice_s, warmup_s=warmup_s,
                                              pattern=pattern, streams=streams, request_bytes=request_bytes,
                                              response_bytes=response_bytes, progress=say, stop=stop)
        for i, p in enumerate(paths):
            own = [s for s in slices if s.path == i]
            if own and not any(s.transactions for s in own):
                raise BadInputError(f"path {p.label}: no slice measured anything ({own[0].shortfall})",
                                    hint=f"check that {p.source} reaches {p.target}: vnetdiag path {p.source} "
                                         f"{p.target}")
        builds: list[PathBuild | None] = [None] * len(paths)
        if describe:
            say("reading how each path is built")
            after = collector.snapshot()  # the bridges have learned the endpoints by now
            builds = [_hops(collector, after, a, b, far=f) for (a, b), f in zip(ends, far)]
    # A far end is named as the user named it (its namespace is the hypervisor's).
    where = [Where(source_netns=a.ns.label, target_netns=(b.lab_node or b.text) if is_far else b.label,
                   client_address=a.address, server_address=b.address or "") for (a, b), is_far in zip(ends, far)]
    return assemble(paths, where, slices, rounds_asked=rounds, slice_s=slice_s, warmup_s=warmup_s, pattern=pattern,
                    streams=streams, builds=builds, interrupted=interrupted, level=level, resamples=resamples,
                    seed=seed)


def document(result: CompareResult) -> dict:
    """The ``vnetdiag.compare/1`` document."""
    from dataclasses import asdict

    def latency(stats) -> dict:
        d = {p.name: round(p.latency_us, 3) for p in stats.percentiles}
        d.update(count=stats.count, min=round(stats.min_us, 3), mean=round(stats.mean_us, 3))
        return d

    def path(f: PathFigures) -> dict:
        return {"label": f.label, "source": f.source, "target": f.target, "source_netns": f.source_netns,
                "target_netns": f.target_netns, "client_address": f.client_address,
                "server_address": f.server_address, "slices": f.slices, "duration_s": round(f.duration_s, 3),
                "transactions": f.transactions, "rate_per_s": round(f.rate_per_s, 1), "latency_us": latency(f.latency),
                "trials": f.trials, "lost": f.lost, "loss_rate": f.loss_rate, "errors": f.errors,
                "retrans_segs": f.retrans_segs, "tails": f.tails, "histogram": [asdict(b) for b in f.histogram],
                "build": None if f.build is None else {
                    "complete": f.build.complete, "kinds": list(f.build.kinds), "notes": list(f.build.notes),
                    "hops": [asdict(h) for h in f.build.hops]},
                "shortfalls": list(f.shortfalls)}

    return {"schema": SCHEMA, "pattern": result.pattern, "streams": result.streams, "slice_s": result.slice_s,
            "warmup_s": result.warmup_s, "rounds": result.rounds, "interrupted": result.interrupted,
            "baseline": result.paths[0].label if result.paths else None,
            "paths": [path(f) for f in result.paths],
            "differences": [asdict(d) for d in result.differences],
            "inference": asdict(result.inference),
            "slices": [{"path": result.paths[s.path].label, "round": s.round, "position": s.position,
                        "started_s": round(s.started_s, 3), "duration_s": round(s.duration_s, 3),
                        "transactions": s.transactions, "trials": s.trials, "lost": s.lost, "errors": s.errors,
                        "retrans_segs": s.retrans_segs, "tails": s.tails, "shortfall": s.shortfall}
                       for s in result.slices],
            "notes": list(result.notes)}
