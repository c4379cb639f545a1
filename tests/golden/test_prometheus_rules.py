"""contrib/prometheus/vnetdiag.rules.yml: valid for promtool, and its alerts fire
exactly on the faulty subjects of the recorded lab series (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "prometheus"
RULES = Path(__file__).parents[2] / "contrib" / "prometheus" / "vnetdiag.rules.yml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")


def test_rules_pass_promtool_check():
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_fire_on_recorded_faults_and_not_on_the_clean_lab(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import make_series
    finally:
        sys.path.remove(str(HERE))
    test = tmp_path / "vnetdiag.rules.test.yml"
    test.write_text(make_series.test_file(RULES))
    r = subprocess.run(["promtool", "test", "rules", str(test)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, (r.stdout + r.stderr)[-3000:]


def _rules() -> list[dict]:
    import yaml

    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_has_a_runbook_that_exists():
    runbooks = (RULES.parents[2] / "docs" / "runbooks.md").read_text()
    anchors = {line[4:].strip().lower() for line in runbooks.splitlines() if line.startswith("### ")}
    alerts = [r for r in _rules() if "alert" in r]
    assert alerts
    for r in alerts:
        url = r["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{r['alert'].lower()}", url
        assert r["alert"].lower() in anchors, f"no '### {r['alert']}' section in docs/runbooks.md"


def test_rate_and_increase_only_of_counters():
    """Every metric under rate()/irate()/increase() is a counter family of the exporter."""
    import re

    from vnetdiag.export.metrics import build_families, snapshot_families
    from vnetdiag.watch import recording

    snap = recording.load(Path(__file__).parent / "watch" / "conntrack-full.jsonl.gz")[1][-1]
    types = {f.name: f.type for f in [*snapshot_families(snap), *build_families()]}
    used = set()
    for r in _rules():
        for name in re.findall(r"\b(?:rate|irate|increase)\((vnetdiag_\w+)", r["expr"]):
            used.add(name)
            assert name.endswith("_total"), (r.get("alert") or r.get("record"), name)
            family = name[: -len("_total")]
            if family in types:  # the watch loop's own counters are not in a snapshot
                assert types[family] == "counter", (name, types[family])
    assert "vnetdiag_netstat_Tcp_RetransSegs_total" in used and "vnetdiag_nf_conntrack_stat_drop_total" in used
