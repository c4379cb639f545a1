"""Live captures of lab traffic (tcpdump through vnetdiag.collect.capture),
compared with tshark; the capture processes are journaled and undone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pcap_reference as ref  # noqa: E402
from pcap_traffic import RR, UDP_RR, UDP_SERVER, Server, run_in  # noqa: E402

from vnetdiag.capture import analyze_file, capture_and_analyze  # noqa: E402
from vnetdiag.model import signatures as sig  # noqa: E402
from vnetdiag.system import proc  # noqa: E402
from vnetdiag.system.undo import KillProcess, all_journals  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.skipif(ref.TSHARK is None, reason="tshark not installed")]


def _same_as_tshark(path: Path, rep) -> None:
    for proto in ("tcp", "udp"):
        rows = ref.conv(str(path), proto)
        mine = {frozenset((c.a, c.b)): c for c in rep.conversations if c.proto == proto}
        assert len(mine) == len(rows)
        for r in rows:
            c = mine[frozenset((r["a"], r["b"]))]
            ab = (c.packets_ab, c.packets_ba) if c.a == r["a"] else (c.packets_ba, c.packets_ab)
            assert ab == (r["frames_ab"], r["frames_ba"])
    exact = {}
    for c in rep.conversations:
        if c.proto == "tcp":
            exact[c.stream] = {k: v for k, v in {c.a: (c.packets_ab, c.bytes_ab),
                                                 c.b: (c.packets_ba, c.bytes_ba)}.items() if v[0]}
    assert exact == ref.stream_bytes(str(path))
    assert {r.frame for r in rep.retransmissions} == ref.retransmitted_frames(str(path))


def _capture_journals() -> list:
    return [j for j in all_journals() if j.owner.startswith(f"capture-{os.getpid()}-")]


def test_loss_fault_seen_on_the_nic_and_over_the_vxlan_underlay(lab, tmp_path):
    vm1, vm3, hv1 = lab.netns("vm1"), lab.netns("vm3"), lab.netns("hv1")
    srv = Server(vm3, 7300)
    usrv = Server(vm3, 7301, UDP_SERVER)
    try:
        lab.add_fault("loss", at="hv1:vm1-p", percent=8)

        def traffic():
            run_in(vm1, RR, lab.ip("vm3"), 7300, 80, 5000)
            run_in(vm1, UDP_RR, lab.ip("vm3"), 7301, 30, 200)

        reports = capture_and_analyze([(vm1, "eth0"), (hv1, "ul0")], snaplen=200, directory=tmp_path,
                                      while_running=traffic)
    finally:
        srv.close()
        usrv.close()
    nic, underlay = reports[f"{vm1}:eth0"], reports[f"{hv1}:ul0"]
    _same_as_tshark(tmp_path / f"{vm1}-eth0.pcap", nic)
    _same_as_tshark(tmp_path / f"{hv1}-ul0.pcap", underlay)
    assert nic.retransmissions, "8 % loss over 80 round trips of 5000 bytes must retransmit"
    assert any(sig.is_timeout(r.signature) or r.signature in (sig.TLP, sig.FAST_RETRANS, sig.OTHER)
               for r in nic.retransmissions)
    tcp = [c for c in underlay.conversations if c.proto == "tcp"]
    assert tcp and all(c.tunnel and c.tunnel.vni == 100 for c in tcp)
    assert any(c.proto == "udp" and c.vxlan_outer for c in underlay.conversations)
    assert not _capture_journals(), "the capture journal must be gone once tcpdump was stopped"


def test_temporary_captures_are_removed_after_analysis(lab):
    vm1 = lab.netns("vm1")
    reports = capture_and_analyze([(vm1, "eth0")], while_running=lambda: lab.run(
        "vm1", ["ping", "-c", "3", "-i", "0.05", lab.ip("vm3")]))
    (rep,) = reports.values()
    assert rep.capture.packets >= 6
    assert not Path(rep.capture.path).exists() and not Path(rep.capture.path).parent.exists()
    assert not _capture_journals()


CHILD = r"""
import sys, time
from vnetdiag.collect.capture import capture
def wait():
    print("ready", flush=True)
    time.sleep(60)
capture([(sys.argv[1], "eth0")], directory=sys.argv[2], while_running=wait)
"""


def test_tcpdump_is_killed_by_the_journal_after_sigkill(lab, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, lab.netns("vm1"), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        journals = [j for j in all_journals() if j.owner.startswith(f"capture-{child.pid}-")]
        assert len(journals) == 1 and not journals[0].owner_alive()
        kills = [s for s in journals[0].steps() if isinstance(s, KillProcess)]
        assert kills and proc.comm(kills[0].pid) == "tcpdump"
        assert journals[0].undo() == []
        deadline = time.monotonic() + 5
        while proc.is_alive(proc.ProcessId(pid=kills[0].pid, start_ticks=kills[0].start_ticks)):
            assert time.monotonic() < deadline, "tcpdump survived the undo"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()


def test_cli_json_on_a_live_capture(lab, tmp_path, cli):
    vm1 = lab.netns("vm1")
    reports = capture_and_analyze([(vm1, "eth0")], directory=tmp_path, while_running=lambda: lab.run(
        "vm1", ["ping", "-c", "2", "-i", "0.05", lab.ip("vm3")]))
    path = tmp_path / f"{vm1}-eth0.pcap"
    r = cli("pcap", str(path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "vnetdiag.pcap/1"
    assert doc["packets"] == reports[f"{vm1}:eth0"].capture.packets
    assert {"proto", "a", "b", "packets_ab", "bytes_ab", "packets_ba", "bytes_ba", "start_s", "duration_s",
            "retransmissions"} <= set(doc["conversations"][0])
