"""README's first command ends in `vnetdiag demo`, which picks one of its
faults at random: every one of them is found, and the demo leaves nothing."""

from __future__ import annotations

import json

import pytest

from labstate import machine_state
from vnetdiag.cli.demo import DEMO_CASES

pytestmark = pytest.mark.root


@pytest.mark.parametrize("fault", sorted(DEMO_CASES))
def test_the_demo_finds_its_fault_and_leaves_nothing(global_settings, cli, lab_prefix, tmp_path, fault):
    # global_settings: the conntrack-full demo lowers nf_conntrack_max.
    prefix = lab_prefix("d")
    clean = machine_state(prefix)
    report = tmp_path / "demo.html"
    r = cli("--json", "demo", "--fault", fault, "--report", str(report), timeout=180,
            env={"VNETDIAG_LAB_PREFIX": prefix})
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["demo"]["found"] is True and doc["demo"]["fault"]["kind"] == fault
    top = doc["verdicts"][0]
    assert doc["demo"]["fault"]["at"].split(":")[0] in top["netns"]
    assert "<svg" in report.read_text()
    assert machine_state(prefix) == clean
