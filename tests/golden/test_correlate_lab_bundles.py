"""Verdicts from recorded bundles (real diagnose runs on the lab, every fault,
both drop tracers: scripts/record_bundles.py), replayed without root: the top
verdict is the fault's place and cause, and the confidence scale means what
docs/diagnose.md says it means."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from vnetdiag.analyze.correlate import BACKGROUND_CAP, PROBE_FLOOR, correlate
from vnetdiag.collect import bundlefile
from vnetdiag.errors import BadInputError
from vnetdiag.model.plain import to_plain

HERE = Path(__file__).parent / "bundles" / "lab"
BUNDLES = sorted(HERE.glob("*.json.gz"))
IDS = [p.name.removesuffix(".json.gz") for p in BUNDLES]


def _load(path: Path):
    return bundlefile.read(path), json.loads(path.with_name(path.name.replace(".json.gz", ".expect.json")).read_text())


def test_there_are_bundles_of_every_fault_with_both_tracers():
    names = {p.name.rsplit("-", 1)[0] for p in BUNDLES}
    backends = {p.name.removesuffix(".json.gz").rsplit("-", 1)[1] for p in BUNDLES}
    assert len(names) >= 7 and backends == {"ebpf", "tracefs"}, (names, backends)


@pytest.mark.parametrize("path", BUNDLES, ids=IDS)
def test_replayed_bundle_names_the_fault(path):
    bundle, expect = _load(path)
    verdicts, _notes = correlate(bundle)
    if expect["cause"] is None:
        assert verdicts == (), verdicts
        return
    assert verdicts, "no verdict"
    top = verdicts[0]
    assert (top.netns, top.cause) == (expect["netns"], expect["cause"]), top
    if expect["device"]:
        assert top.device == expect["device"], top
    assert top.on_path


@pytest.mark.parametrize("path", BUNDLES, ids=IDS)
def test_confidence_means_what_the_scale_says(path):
    bundle, _expect = _load(path)
    verdicts, _ = correlate(bundle)
    losses = bundle.symptom.losses
    for v in verdicts:
        # >= 0.9 only when the probe's own lost packets were traced dying there...
        if v.confidence >= PROBE_FLOOR:
            assert v.probe_packets, v
        # ... and then whenever they are at least half of what the probe lost.
        if v.probe_packets and v.on_path and losses and v.probe_packets >= 0.5 * losses:
            assert v.confidence >= PROBE_FLOOR, v
        # A place where only other traffic's packets died stays low.
        if v.probe_packets == 0 and v.background and v.count <= v.background:
            assert v.confidence <= BACKGROUND_CAP, v
        if not v.on_path:
            assert v.confidence < PROBE_FLOOR * 0.5, v
    if bundle.drops is None or bundle.drops.backend != "ebpf":  # tracefs: the probe's packets cannot be told apart
        assert all(v.probe_packets is None and v.confidence < PROBE_FLOOR for v in verdicts)


@pytest.mark.parametrize("path", BUNDLES[:3], ids=IDS[:3])
def test_a_bundle_survives_the_round_trip(path, tmp_path):
    bundle, _ = _load(path)
    again = tmp_path / "again.json.gz"
    bundlefile.write(again, bundle)
    assert to_plain(bundlefile.read(again)) == to_plain(bundle)
    assert correlate(bundlefile.read(again)) == correlate(bundle)


def test_bad_bundles_are_one_line_errors(tmp_path):
    cases = {"missing": None, "not-gzip": b"hello", "not-json": gzip.compress(b"{nope"),
             "other-schema": gzip.compress(b'{"schema": "vnetdiag.snapshots/1"}'),
             "damaged": gzip.compress(b'{"schema": "vnetdiag.bundle/1", "symptom": 3}')}
    for name, data in cases.items():
        p = tmp_path / name
        if data is not None:
            p.write_bytes(data)
        with pytest.raises(BadInputError):
            bundlefile.read(p)
