"""The lab: reachability, every fault's kernel evidence, and cleanup."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labtraffic import TcpEcho, conntrack_stats, iptables_drops, link_stats, ping, qdisc

pytestmark = pytest.mark.root


def test_every_guest_reaches_every_other_by_icmp_and_tcp(lab):
    # vm1<->vm3 crosses the vxlan overlay; vm2 sits behind the macvtap backend.
    for src, dst in itertools.permutations(lab.guests, 2):
        assert ping(lab, src, dst, count=2) == (2, 2), f"{src} -> {dst}"
    for dst in lab.guests:
        server = TcpEcho(lab, dst)
        try:
            for src in lab.guests:
                if src != dst:
                    assert server.connect_from(src), f"tcp {src} -> {dst}"
        finally:
            server.close()


def test_loss_drops_exactly_what_the_rule_counts(lab):
    ping(lab, "vm1", "vm3", count=1)
    lab.add_fault("loss", at="hv1:vm1-p", percent=30)
    sent, received = ping(lab, "vm1", "vm3", count=100, interval_s=0.005)
    dropped = iptables_drops(lab, "hv1", "raw", "PREROUTING")
    assert 5 <= dropped <= 60  # 30 % of 100, with generous binomial room
    # Only requests enter at vm1-p, so each drop is exactly one lost ping.
    assert sent - received == dropped
    lab.clear_faults()
    assert iptables_drops(lab, "hv1", "raw", "PREROUTING") == 0
    assert ping(lab, "vm1", "vm3", count=20, interval_s=0.005) == (20, 20)


def test_queue_overflow_drops_in_the_tbf_qdisc(lab):
    lab.add_fault("queue-overflow", at="hv1:vx0")
    q = qdisc(lab, "hv1", "vx0")
    assert q["kind"] == "tbf" and q["drops"] == 0
    lab.run("vm1", ["ping", "-c", "150", "-l", "30", "-i", "0.005", "-s", "1400", "-q", "-W", "1",
                    lab.ip("vm3")], check=False, timeout=30)
    q = qdisc(lab, "hv1", "vx0")
    assert q["drops"] > 0 and q["overlimits"] > 0
    lab.clear_faults()
    assert qdisc(lab, "hv1", "vx0")["kind"] != "tbf"
    assert ping(lab, "vm1", "vm3", count=20, interval_s=0.005, size=1400) == (20, 20)


def test_tx_stall_freezes_tx_while_the_backlog_grows(lab):
    ping(lab, "vm1", "vm3", count=1)
    lab.add_fault("tx-stall", at="hv2:vm3-p")
    ping(lab, "vm1", "vm3", count=25, interval_s=0.005, wait_s=0.2)  # the full bucket lets ~1.5 KB go
    tx_before = link_stats(lab, "hv2", "vm3-p")["tx"]["packets"]
    backlog_before = qdisc(lab, "hv2", "vm3-p")["qlen"]
    sent, received = ping(lab, "vm1", "vm3", count=30, interval_s=0.01, wait_s=0.2)
    assert received == 0
    assert link_stats(lab, "hv2", "vm3-p")["tx"]["packets"] == tx_before
    assert qdisc(lab, "hv2", "vm3-p")["qlen"] >= backlog_before + 30
    lab.clear_faults()
    assert ping(lab, "vm1", "vm3", count=10, interval_s=0.01) == (10, 10)


def test_slow_guest_fills_the_macvtap_ring_and_drops_there(lab):
    ping(lab, "vm1", "vm2", count=1)
    before = link_stats(lab, "hv1", "mvtap0")["rx"]
    lab.add_fault("slow-guest", at="hv1:mvtap0", queue_len=16)
    sent, received = ping(lab, "vm1", "vm2", count=50, interval_s=0.005, wait_s=0.2)
    after = link_stats(lab, "hv1", "mvtap0")["rx"]
    dropped = after["dropped"] - before["dropped"]
    # The ring holds 16 frames; every request after that is dropped at the macvtap
    # (and counted as an RX error too, as in seed 001: "RX errors 152 dropped 152").
    assert received == 0
    assert dropped == sent - 16
    assert after["errors"] - before["errors"] == dropped
    lab.clear_faults()
    assert ping(lab, "vm1", "vm2", count=10, interval_s=0.01) == (10, 10)


def test_conntrack_full_refuses_new_connections_and_counts_them(global_settings, lab):
    maximum = Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text()
    server = TcpEcho(lab, "vm3")
    try:
        assert server.connect_from("vm1")
        lab.add_fault("conntrack-full", at="hv1", max=32)
        assert Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text().strip() == "32"
        drops_before = conntrack_stats(lab, "hv1")["drop"]
        assert not server.connect_from("vm1", timeout_s=1.5)  # SYN at 0 s and its retransmit at 1 s
        assert conntrack_stats(lab, "hv1")["drop"] - drops_before >= 2
        lab.clear_faults()
        assert Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text() == maximum
        assert server.connect_from("vm1")
    finally:
        server.close()


def test_mtu_mismatch_drops_big_frames_and_passes_small_ones(lab):
    lab.add_fault("mtu-mismatch", at="hv1:vx0", mtu=1400)
    link = json.loads(lab.run("hv1", ["ip", "-j", "link", "show", "dev", "vx0"]).stdout)[0]
    assert link["mtu"] == 1400
    assert ping(lab, "vm1", "vm3", count=3, size=1472, dont_fragment=True, wait_s=0.3)[1] == 0
    assert ping(lab, "vm1", "vm3", count=3, size=1000, dont_fragment=True) == (3, 3)
    lab.clear_faults()
    assert ping(lab, "vm1", "vm3", count=3, size=1472, dont_fragment=True) == (3, 3)


def test_fault_placement_errors_are_one_line(lab, cli):
    env = {"VNETDIAG_LAB_PREFIX": lab.prefix}
    r = cli("lab", "fault", "add", "loss", "--at", "hv1:mvtap0", env=env)
    assert r.returncode == 2 and "macvtap" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("lab", "fault", "add", "loss", "--at", "hv9:eth0", env=env)
    assert r.returncode == 2 and "no device" in r.stderr
    r = cli("lab", "fault", "add", "slow-guest", "--at", "hv1:vm1-p", env=env)
    assert r.returncode == 2 and "macvtap" in r.stderr
    assert lab.faults() == []
