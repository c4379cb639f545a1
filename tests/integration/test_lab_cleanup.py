"""Nothing of a lab remains after `lab down`, also after SIGKILL of `lab up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labstate import CONNTRACK_MAX, machine_state

pytestmark = pytest.mark.root


def _wait(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_down_restores_everything_even_with_faults_active(global_settings, cli, lab_prefix):
    prefix = lab_prefix("c")
    env = {"VNETDIAG_LAB_PREFIX": prefix}
    clean = machine_state(prefix)
    assert clean["netns"] == []
    r = cli("lab", "up", env=env)
    assert r.returncode == 0, r.stderr
    for kind, at in (("conntrack-full", "hv1"), ("slow-guest", "hv1:mvtap0"), ("tx-stall", "hv2:vm3-p")):
        assert cli("lab", "fault", "add", kind, "--at", at, env=env).returncode == 0
    assert machine_state(prefix) != clean
    r = cli("lab", "down", env=env)
    assert r.returncode == 0, r.stderr
    assert machine_state(prefix) == clean
    # Idempotent: a second down finds nothing and succeeds.
    assert cli("lab", "down", env=env).returncode == 0


@pytest.mark.parametrize("stage", ["namespaces", "backend", "fault"])
def test_sigkill_halfway_then_down_leaves_nothing(global_settings, cli, stage, lab_prefix):
    prefix = lab_prefix("k")
    env = {**os.environ, "VNETDIAG_LAB_PREFIX": prefix}
    clean = machine_state(prefix)
    vnetdiag = str(Path(sys.executable).with_name("vnetdiag"))
    if stage == "fault":
        assert subprocess.run([vnetdiag, "lab", "up"], env=env, capture_output=True).returncode == 0
        child = subprocess.Popen([vnetdiag, "lab", "fault", "add", "conntrack-full", "--at", "hv1"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: CONNTRACK_MAX.read_text() != clean["conntrack_max"], 10)
    else:
        child = subprocess.Popen([vnetdiag, "lab", "up"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        if stage == "namespaces":
            assert _wait(lambda: len(machine_state(prefix)["netns"]) >= 2, 10)
        else:
            assert _wait(lambda: machine_state(prefix)["backends"], 10)
    child.send_signal(signal.SIGKILL)
    child.wait()
    r = subprocess.run([vnetdiag, "lab", "down"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _wait(lambda: machine_state(prefix) == clean, 5), machine_state(prefix)


def test_cleanup_removes_a_lab_without_its_state_file(global_settings, cli, tmp_path, lab_prefix):
    prefix = lab_prefix("w")
    # Its own state directory: cleanup removes every lab it knows, and the
    # session's shared lab must survive this test.
    state = tmp_path / "state"
    env = {"VNETDIAG_LAB_PREFIX": prefix, "VNETDIAG_STATE_DIR": str(state)}
    clean = machine_state(prefix, state)
    assert cli("lab", "up", env=env).returncode == 0
    # Lose the journal as a crash of the state disk would; the sweep still finds the lab by name.
    (state / "journals" / f"lab-{prefix}.jsonl").unlink()
    r = cli("cleanup", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert any(prefix in item for item in __import__("json").loads(r.stdout)["removed"])
    assert _wait(lambda: machine_state(prefix, state) == clean, 5), machine_state(prefix, state)


def test_two_conntrack_faults_restore_the_limit_in_any_order(global_settings, lab_factory, lab_prefix):
    """nf_conntrack_max is global: overlapping faults (two labs, or two in one) must
    leave the machine's own value, whichever is cleared first."""
    import copy

    from vnetdiag.lab import _spec_to_data, spec as spec_mod

    pristine = CONNTRACK_MAX.read_text()
    data = _spec_to_data(spec_mod.default(lab_prefix("2")))
    lab2 = lab_factory(copy.deepcopy(data))
    f1 = lab2.add_fault("conntrack-full", "hv1", max=50)
    f2 = lab2.add_fault("conntrack-full", "hv1", max=40)
    assert CONNTRACK_MAX.read_text().strip() == "40"
    lab2.clear_fault(f1.id)  # the first one cleared first: the second still holds it
    assert CONNTRACK_MAX.read_text().strip() == "40"
    lab2.clear_fault(f2.id)
    assert CONNTRACK_MAX.read_text() == pristine
