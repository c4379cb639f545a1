"""The fleet on three simulated hosts: each a namespace with its own sshd and guest.

Hosts are chained on an underlay (h1 - h2 - h3) and joined by a vxlan overlay
(testing/fleetsim.py); every agent is scoped to its host's two namespaces, so
although the three share one kernel, each reports only its own drops. The
coordinator reaches each sshd through ssh with a key made by the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vnetdiag.system import nsexec
from vnetdiag.system.state import journals_dir
from vnetdiag.testing.fleetsim import SimFleet
from vnetdiag.testing.simbase import wait_for

pytestmark = pytest.mark.root

PREFIX = os.environ.get("VNETDIAG_LAB_PREFIX", "hm")[:4]
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
WINDOW = ["--duration", "2", "--streams", "8"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimFleet(tmp_path_factory.mktemp("fleet"), prefix=PREFIX) as s:
        yield s


@pytest.fixture
def loss_on_h2(sim):
    """3 % of the tunnel's packets from h1 dropped as h2 forwards them (in at its eth1)."""
    rule = ["FORWARD", "-i", "eth1", "-p", "udp", "--dport", "4789", "-m", "statistic", "--mode", "random",
            "--probability", "0.03", "-j", "DROP"]
    netns = f"/run/netns/{sim.host(2)}"
    nsexec.run(["iptables", "-A", *rule], netns=netns)
    yield
    nsexec.run(["iptables", "-D", *rule], netns=netns)


def inventory(sim, tmp_path, **command) -> str:
    """The sim's inventory with some hosts' vnetdiag_command replaced (h3="vnetdiag")."""
    path = tmp_path / "hosts.ini"
    path.write_text(sim.inventory_text(command={int(k[1:]): v for k, v in command.items()}))
    return str(path)


def cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([VNETDIAG, *args], capture_output=True, text=True, timeout=timeout_s)


def agent_pids() -> set[int]:
    """Running agents of this test's hosts (their --netns names the sim's namespaces)."""
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in argv and any(a.startswith(f"{PREFIX}h".encode()) for a in argv):
            out.add(int(p.name))
    return out


def children(pid: int) -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(p.name))
    return out


def assert_nothing_left(sim, pids: set[int]) -> None:
    """No agent of the sim runs, none of ``pids`` (agents and their children) is alive,
    no journal of theirs is left, and no probe server listens in a guest."""
    wait_for(lambda: not agent_pids(), what=f"agents to exit: {agent_pids()}")
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), what=f"processes {pids} to exit")
    left = [j.name for j in journals_dir().glob("*.jsonl") if any(re.search(rf"-{p}(\D|$)", j.stem) for p in pids)]
    assert not left, f"journals left behind: {left}"
    for i in range(1, sim.n + 1):
        listening = nsexec.run(["ss", "-Hltn", "sport = :7421"], netns=f"/run/netns/{sim.guest(i)}").stdout
        assert not listening.strip(), f"probe server still listening in {sim.guest(i)}: {listening}"


def test_diagnose_across_hosts_names_host2_and_its_device(sim, loss_on_h2):
    r = cli("--json", "diagnose", "--from", "h1:" + sim.guest(1), "--to", "h3:" + sim.guest(3),
            "--hosts", str(sim.inventory), *WINDOW)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    top = doc["verdicts"][0]
    assert top["netns"].startswith("h2:") and top["device"] == "eth1", top
    assert top["cause"] == "drop" and top["reason"] == "NETFILTER_DROP", top
    assert top["evidence"][0]["text"] == "seen by the agent on host h2"
    assert top["on_path"]
    # Scoping: h1's and h3's agents saw the same kernel's drops but did not report h2's.
    assert not any(v["device"] == "eth1" and not v["netns"].startswith("h2:") for v in doc["verdicts"])
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == {"h1", "h2", "h3"}
    assert "host:eth1" in hosts["h2"]["path"], hosts["h2"]
    assert all(abs(h["clock_offset_ns"]) < 50_000_000 for h in hosts.values())  # one machine: ~0
    assert doc["symptom"]["tails"] > 0
    assert_nothing_left(sim, {h["agent_pid"] for h in hosts.values()})


def test_an_unreachable_host_is_one_line_and_exit_2(sim, tmp_path):
    path = tmp_path / "hosts.ini"
    # h2's address moved to one nobody has: the relay inside h2's namespace cannot connect.
    path.write_text(sim.inventory_text().replace(f"ansible_host={sim.underlay(2)}", "ansible_host=10.98.12.77"))
    r = cli("diagnose", "--from", "h1:" + sim.guest(1), "--to", "h3:" + sim.guest(3), "--hosts", str(path), *WINDOW)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("vnetdiag:")]
    assert len(errors) == 1 and errors[0].startswith("vnetdiag: cannot reach h2 (root@10.98.12.77)"), r.stderr
    assert "Traceback" not in r.stderr
    assert_nothing_left(sim, set())


def test_a_host_without_vnetdiag_is_exit_3(sim, tmp_path):
    path = inventory(sim, tmp_path, h3="vnetdiag")  # not on the ssh session's PATH
    r = cli("diagnose", "--from", "h1:" + sim.guest(1), "--to", "h3:" + sim.guest(3), "--hosts", path, *WINDOW)
    assert r.returncode == 3, r.stderr
    assert "vnetdiag: vnetdiag is not installed on h3 (vnetdiag: not found)" in r.stderr
    assert "Traceback" not in r.stderr
    assert_nothing_left(sim, set())


def test_an_agent_of_another_protocol_version_is_refused(sim, tmp_path):
    old = tmp_path / "old-vnetdiag"
    old.write_text('#!/bin/sh\necho \'{"type":"hello","protocol":99,"version":"9.9.9","host":"x","pid":1}\'\n'
                   "exec cat >/dev/null\n")
    old.chmod(0o755)
    path = inventory(sim, tmp_path, h2=str(old))
    r = cli("diagnose", "--from", "h1:" + sim.guest(1), "--to", "h3:" + sim.guest(3), "--hosts", path, *WINDOW)
    assert r.returncode == 3, r.stderr
    assert "h2: agent speaks protocol 99 (vnetdiag 9.9.9), this is protocol 1" in r.stderr
    assert_nothing_left(sim, set())


def test_an_agent_killed_mid_run_stops_the_run_and_leaves_nothing(sim, loss_on_h2):
    from vnetdiag.errors import VnetdiagError
    from vnetdiag.fleet.diagnose import diagnose_fleet

    killed: dict[str, set[int]] = {}

    def kill_h3() -> None:
        h3 = {p for p in agent_pids() if sim.guest(3).encode() in Path(f"/proc/{p}/cmdline").read_bytes()}
        assert len(h3) == 1, h3
        (pid,) = h3
        # Its bpftrace: the child a killed agent cannot stop itself.
        killed["pids"] = {pid} | children(pid)
        time.sleep(0.5)  # into the probe's window
        os.kill(pid, signal.SIGKILL)

    def progress(message: str) -> None:
        if message.startswith("probe "):
            threading.Thread(target=kill_h3).start()

    with pytest.raises(VnetdiagError) as err:
        diagnose_fleet(source=f"h1:{sim.guest(1)}", target=f"h3:{sim.guest(3)}", hosts_file=str(sim.inventory),
                       duration_s=2, warmup_s=0.3, streams=8, progress=progress)
    assert err.value.exit_status == 3
    assert err.value.message.startswith("h3: the agent on h3 was lost") or \
        err.value.message.startswith("the agent on h3 was lost"), err.value.message
    assert "what it left was undone by a new agent" in err.value.message
    assert len(killed["pids"]) >= 2, "the h3 agent had no tracer child to leave behind"
    assert_nothing_left(sim, killed["pids"])
