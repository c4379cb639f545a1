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
