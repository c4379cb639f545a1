"""kill -9 of diagnose while every tracer runs (bpftrace, netfilter tracing's
table and monitor, the probe server): `vnetdiag cleanup` leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnetdiag.system import proc

pytestmark = pytest.mark.root
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


def _journaled(journals: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for j in journals.glob("*.jsonl"):
        for line in j.read_text().splitlines()[1:]:
            step = json.loads(line)
            out.setdefault(step.get("op", ""), []).append(step)
    return out


def _trace_tables(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if "vnetdiag_trace_" in line]


def test_kill9_during_diagnose_then_cleanup_leaves_no_tracer_table_or_process(lab, tmp_path):
    from vnetdiag.collect.droptrace import ebpf_unusable

    lab.add_fault("loss", at="hv1:vm1-p", percent=3)  # a dropping rule in hv1: netfilter tracing runs there
    hv1 = lab.netns("hv1")
    env = {**os.environ, "VNETDIAG_STATE_DIR": str(tmp_path / "state"),
           # Not this run's lab prefix: cleanup in this empty state would sweep its lab as lost.
           "VNETDIAG_LAB_PREFIX": f"x{os.getpid() % 1000000}"}
    journals = tmp_path / "state" / "journals"
    p = subprocess.Popen([VNETDIAG, "diagnose", "--from", lab.netns("vm1"), "--to", lab.netns("vm3"),
                          "--duration", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The probe is running once diagnose says so: every tracer has started by then.
        for line in p.stderr:
            if line.startswith("diagnose: probe "):
                break
        assert _trace_tables(hv1), "netfilter tracing did not start in hv1"
        steps = _journaled(journals)
        helpers = [proc.ProcessId(pid=s["pid"], start_ticks=s["start_ticks"]) for s in steps.get("kill-process", [])]
        assert len(helpers) >= (1 if ebpf_unusable() else 2)  # nft monitor (+ bpftrace)
    finally:
        p.kill()
        p.wait(timeout=10)
    assert _trace_tables(hv1)  # killed: nothing undid it yet
    out = subprocess.run([VNETDIAG, "cleanup"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _trace_tables(hv1) == []
    assert not [h for h in helpers if proc.is_alive(h)]
    assert not list(journals.glob("*.jsonl"))
