"""Verdicts from bundles recorded on the scenario suite (topologies built with
plain ip/tc/iptables/nft commands, IPv6 on, background traffic: see
tests/integration/test_scenarios.py, recorded with VNETDIAG_RECORD_SCENARIOS=1),
replayed without root. The expectations are the ones the live test asserts: the
top verdict's namespace, device and cause, its probe packets equal to the
kernel's count of the probe's lost packets (nft meters at both ends) where the
scenario says exact, background-only places below the probe's, no verdict on
the clean path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnetdiag.analyze.correlate import BACKGROUND_CAP, PROBE_FLOOR
from vnetdiag.collect import bundlefile
from vnetdiag.diagnose import diagnosis_of

HERE = Path(__file__).parent / "bundles" / "scenarios"
BUNDLES = sorted(HERE.glob("*.json.gz"))
IDS = [p.name.removesuffix(".json.gz") for p in BUNDLES]


def test_every_scenario_has_a_bundle():
    from scenarios import SCENARIOS

    assert set(IDS) == {name for name, _tag, _build in SCENARIOS}


@pytest.mark.parametrize("path", BUNDLES, ids=IDS)
def test_replayed_scenario_has_the_kernels_verdict(path):
    bundle = bundlefile.read(path)
    expect = json.loads(path.with_name(path.name.replace(".json.gz", ".expect.json")).read_text())
    d = diagnosis_of(bundle).diagnosis
    assert bundle.drops is not None and bundle.drops.backend == "ebpf"
    for v in d.verdicts:
        if v.probe_packets == 0 and v.background:
            assert v.confidence <= BACKGROUND_CAP, v
    ranks = [bool(v.probe_packets) for v in d.verdicts]
    assert ranks == sorted(ranks, reverse=True), d.verdicts
    if expect.get("cause", "") is None:
        assert not d.problem_found and d.verdicts == ()
        return
    assert d.verdicts, "no verdict"
    top = d.verdicts[0]
    assert top.netns == expect["netns"], top
    assert top.device in expect["devices"] and top.cause in expect["causes"], top
    assert top.on_path and top.probe_packets and top.confidence >= PROBE_FLOOR, top
    if expect["probe_packets"] is not None:
        assert top.probe_packets == expect["probe_packets"], top
