"""diagnose on topologies built with plain ip/tc/iptables/nft/sysctl/bridge
commands (tests/scenarios), IPv6 on and other tenants' traffic running, one
fault each (or none): the top verdict is the fault's place and cause, its count
of the probe's packets is the kernel's (nft meter counters at both ends), other
traffic's drops never outrank it, and a clean path has no verdict.

VNETDIAG_RECORD_SCENARIOS=1 also writes each run's bundle and truth to
tests/golden/bundles/scenarios/ for the rootless replay
(tests/golden/test_correlate_scenario_bundles.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kernelgap import kernel_gap
from scenarios import SCENARIOS
from scenarios.bed import Bed
from vnetdiag.analyze.correlate import BACKGROUND_CAP, COUNTED_FLOOR, PROBE_FLOOR
from vnetdiag.analyze.drops import location_function
from vnetdiag.analyze.evidence.packets import direction
from vnetdiag.collect import bundlefile
from vnetdiag.diagnose import diagnose
from vnetdiag.testing.plugin import _base36

pytestmark = pytest.mark.root

RUN_PREFIX = f"hs{_base36(os.getpid())}"
"""Every namespace of this run starts with it: concurrent runs never collide."""
PROBE_PORT = 20000 + os.getpid() % 10000
"""Below the ephemeral range and apart from the background's 52xx: only the probe uses it."""
WINDOW_S = 3.0
RECORD = Path(__file__).resolve().parents[1] / "golden" / "bundles" / "scenarios"


def _leftovers() -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(RUN_PREFIX))
    except FileNotFoundError:
        return []


@pytest.fixture
def bed(request):
    if os.geteuid() != 0:
        pytest.skip("needs root: builds real network namespaces")
    tag = request.node.callspec.params["scenario"][1]
    b = Bed(prefix=f"{RUN_PREFIX}{tag}", probe_port=PROBE_PORT)
    yield b
    failures = b.teardown()
    assert not failures, failures
    assert not [n for n in _leftovers() if n.startswith(b.prefix)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario_top_verdict_is_the_kernels_truth(bed, scenario):
    name, _tag, build = scenario
    case = build(bed)
    started = time.monotonic()
    run = diagnose(source=case.source, target=case.target, duration_s=WINDOW_S, warmup_s=0.3, backend="ebpf",
                   port=PROBE_PORT, **case.probe)
    wall_s = time.monotonic() - started
    lost = case.meter.lost()
    fault = case.fault_counters()
    d = run.diagnosis
    top = d.verdicts[0] if d.verdicts else None
    summary = {"scenario": name, "wall_s": round(wall_s, 2), "lost": lost, "fault": fault,
               "shortfall": d.shortfall, "verdicts": [_brief(v) for v in d.verdicts[:4]],
               "tracer_notes": [n for n in d.notes if "tracer" in n]}
    print(json.dumps(summary))
    if os.environ.get("VNETDIAG_RECORD_SCENARIOS"):
        _record(name, case, bed, run, lost)
    assert d.backend == "ebpf", d.backend
    assert case.fault_fired(fault), f"the fault did not fire: {fault}"
    # Nothing of the probe's flows can travel after the window (no FIN to resend,
    # no TIME_WAIT): the meter read now counts what the tracer could see.
    for node in (case.client, case.server):
        left = [s for s in bed.run(node, ["ss", "-Htan"]).stdout.splitlines()
                if any(a.endswith(f":{PROBE_PORT}") for a in s.split()[3:5])]  # local, peer
        if not any(s.startswith("LISTEN") for s in left):
            # A request (SYN-RECV) whose listener has closed stays listed until its
            # SYN-ACK timer fires, which then drops it without sending (the kernel's
            # reqsk_timer_handler): it cannot travel (ci29, ecmp-dead-leg).
            left = [s for s in left if not s.startswith("SYN-RECV")]
        assert not left, (node, left)
    # Other traffic's drops are never a confident verdict, whatever the path.
    for v in d.verdicts:
        if v.probe_packets == 0 and v.background:
            assert v.confidence <= BACKGROUND_CAP, v
    if case.expect is None:
        assert lost["forward"] == lost["reverse"] == 0, lost
        assert not d.problem_found and d.verdicts == (), d.verdicts
        return
    assert lost["forward"] + lost["reverse"] > 0, f"the probe lost nothing: {lost}"
    assert d.problem_found and top is not None, f"no verdict; notes: {d.notes}"
    want = case.expect
    assert (top.netns_inode, top.device, top.cause) in {
        (bed.nodes[want.node].inode, dev, cause) for dev in want.devices for cause in want.causes}, summary
    assert top.on_path and top.probe_packets, summary
    # The scale of docs/diagnose.md: 0.9 and up once at least half of what the
    # probe lost was traced dying there, 0.6 and up for fewer. Fewer happens where
    # packets outlive the window (ecmp-dead-leg: SYNs still queued for a failed
    # neighbour when the tracer stops, ci28: 8 traced of 20 lost), never where
    # the count is exact.
    seen_half = 2 * top.probe_packets >= lost["forward"] + lost["reverse"]
    assert top.confidence >= (PROBE_FLOOR if seen_half or want.exact_count else COUNTED_FLOOR), summary
    if want.exact_count:
        # Exact, unless the kernel told the tracer it did not see everything:
        # records it could not deliver (perf buffer full: that many at most), or
        # drops it skipped the program for (another BPF program running on that
        # CPU: a floor, some skips go uncounted). diagnose notes both as "counts
        # may be low".
        #
        # Or the program never ran for a drop and the kernel said nothing
        # (kernelgap.py: measured one drop in ~70 runs, seen by a tracefs
        # instance, never by the program, each time the only drop processed on
        # top of this machine's own agent process; docs/tracing.md).
        loss = run.bundle.drops.loss if run.bundle.drops is not None else None
        lost_total = lost["forward"] + lost["reverse"]
        short = lost_total - top.probe_packets
        assert short >= 0, summary
        if not (loss is not None and loss.missed):
            allowed = (loss.lost if loss is not None else 0) + kernel_gap(run.bundle.drops, lost_total,
                                                                          _where_the_probe_died(run, top))
            assert short <= allowed, {**summary, **_trace_account(run, top, name)}
    # Places where only other traffic's packets died rank below every place of the probe's.
    ranks = [bool(v.probe_packets) for v in d.verdicts]
    assert ranks == sorted(ranks, reverse=True), [_brief(v) for v in d.verdicts]


def _here(top, netns_inode: int, device: str) -> bool:
    return netns_inode == top.netns_inode and (top.device is None or device == top.device)


def _where_the_probe_died(run, top):
    """At the top verdict's place, the (reason, function) keys where the probe's packets died."""
    keys = {(p.reason, location_function(p.location)) for p in run.bundle.drops.packets
            if _here(top, p.netns_inode, p.device) and direction(p, run.bundle.probe)}
    return lambda x: _here(top, x.netns_inode, x.device) and (x.reason, location_function(x.location)) in keys


def _trace_account(run, top, name: str) -> dict:
    """What the tracer had at the top verdict's place, for a count that did not
    match: the kernel's tallies there, its records there by whose they were, the
    kernel's skip count, and the bundle saved for the rootless replay."""
    drops = run.bundle.drops
    here = [t for t in drops.tallies if _here(top, t.netns_inode, t.device)]
    records: dict[str, int] = {}
    for p in drops.packets:
        if _here(top, p.netns_inode, p.device):
            key = f"{direction(p, run.bundle.probe) or 'other'} {p.reason} {location_function(p.location)}"
            records[key] = records.get(key, 0) + 1
    saved = Path(os.environ.get("TMPDIR", "/tmp")) / f"vnetdiag-scenario-{name}-{os.getpid()}.json.gz"
    bundlefile.write(saved, run.bundle)
    return {"tallies_here": {f"{t.reason} {t.location}": t.count for t in here}, "records_here": records,
            "loss": {"lost": drops.loss.lost, "suppressed": drops.loss.suppressed, "missed": drops.loss.missed},
            "records": len(drops.packets), "bundle": str(saved)}


def _brief(v) -> str:
    return (f"{v.netns}:{v.device} {v.cause} {v.reason} count {v.count} conf {v.confidence} "
            f"probe {v.probe_packets} bg {v.background}")


def _record(name, case, bed: Bed, run, lost) -> None:
    RECORD.mkdir(parents=True, exist_ok=True)
    bundlefile.write(RECORD / f"{name}.json.gz", run.bundle)
    labels = {n.inode: n.label for n in run.bundle.after.namespaces}
    want = case.expect
    expect = {"cause": None} if want is None else {
        "netns": labels[bed.nodes[want.node].inode], "devices": sorted(want.devices, key=str),
        "causes": sorted(want.causes), "probe_packets": lost["forward"] + lost["reverse"] if want.exact_count
        else None, "lost": lost}
    (RECORD / f"{name}.expect.json").write_text(json.dumps(expect, indent=1) + "\n")
