"""The probe against the lab: clean paths have no timer tails; loss gives
200 ms tails that TCP_INFO confirms and TcpRetransSegs matches; a full
conntrack table gives SYN-retransmit connect tails; udp-rr counts exactly the
packets the fault dropped; bsp efficiency falls when a fault adds tails."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path

import pytest

from vnetdiag.analyze.tails import bands, classify, implied_retransmits
from vnetdiag.model.signatures import is_timeout
from vnetdiag.probe.client import run_probe
from vnetdiag.probe.server import Server

pytestmark = pytest.mark.root
PORT = 7735
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"


@pytest.fixture
def serve(lab):
    servers = []

    def start(node):
        srv = Server(bind=lab.ip(node), port=PORT, netns=lab.netns(node))
        srv.serve_in_thread()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def probe(lab, src, dst, **kw):
    return run_probe(lab.ip(dst), port=PORT, netns=lab.netns(src), **kw)


def timer_tails(result, phase="transaction"):
    return [t for t in result.tails if is_timeout(t.signature) and t.phase == phase]


def fault_drops(lab, node="hv1", table="raw", chain="PREROUTING") -> int:
    """Packets the lab's loss rule dropped so far (its iptables counter)."""
    out = lab.run(node, ["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"]).stdout
    rows = [ln.split() for ln in out.splitlines() if "vnetdiag-fault" in ln]
    assert len(rows) == 1, out
    return int(rows[0][0])


def test_clean_tcp_rr_between_every_guest_pair_has_no_timer_tails(lab, serve):
    for src, dst in itertools.combinations(lab.guests, 2):
        srv = serve(dst)
        r = probe(lab, src, dst, streams=2, duration_s=0.8, warmup_s=0.2)
        assert r.transactions > 500, (src, dst)
        assert r.errors == 0 and not r.notes
        assert timer_tails(r) == [], (src, dst, r.tails)
        assert not any(t.confirmed_by_tcp_info for t in r.tails)
        assert r.tcp.retrans_segs_delta == 0 and r.tcp.server_retrans_segs_delta == 0
        srv.stop()


def test_loss_gives_rto_tails_confirmed_by_tcp_info_and_counters(lab, serve):
    serve("vm3")
    lab.add_fault("loss", at="hv1:vm1-p", percent=3)
    r = probe(lab, "vm1", "vm3", streams=4, duration_s=2.5, warmup_s=0)
    rto = [t for t in r.tails if t.signature == "min-rto"]
    assert rto and rto[0].count >= 5, r.tails
    assert 180 <= rto[0].threshold_ms <= 200  # this kernel's rto_min is 200 ms
    for t in timer_tails(r):
        assert t.confirmed_by_tcp_info >= 0.9 * t.count, t
    # The retransmissions TCP_INFO saw on the probe's sockets are exactly what the
    # namespaces' TcpRetransSegs counted, up to the control connection's few.
    client, server = r.tcp.tcp_info_client_retrans, r.tcp.tcp_info_server_retrans
    assert client == sum(s.client_retrans_delta or 0 for s in r.slow)  # all listed: fewer than 500
    assert client <= r.tcp.retrans_segs_delta <= client + 3
    assert server <= r.tcp.server_retrans_segs_delta <= server + 3
    assert implied_retransmits(r.tails) <= r.tcp.retrans_segs_delta + r.tcp.server_retrans_segs_delta


def test_udp_rr_counts_exactly_what_the_fault_dropped(lab, serve):
    serve("vm3")
    # UDP only: the rule then counts the probe's requests alone, not a delayed
    # ACK of the control connection or an earlier test's orphaned FIN (ci25: 61
    # rule drops, 60 requests lost).
    lab.add_fault("loss", at="hv1:vm1-p", percent=5, protocol="udp")
    marks = {}
    r = probe(lab, "vm1", "vm3", pattern="udp-rr", streams=2, duration_s=1.5, warmup_s=0, udp_timeout_ms=50,
              on_phase=lambda phase: marks.__setitem__(phase, fault_drops(lab)))
    dropped = marks["end"] - marks["start"]
    assert dropped > 10
    # The loss is on vm1's side (requests): every drop is one lost request.
    assert r.udp.lost == dropped
    assert r.udp.requests_lost == dropped
    assert r.udp.sent == r.udp.replies + r.udp.lost + r.udp.late
    assert r.udp.duplicate == 0


def test_tcp_crr_under_conntrack_full_shows_syn_retransmit_tails(global_settings, lab, serve):
    # Sockets orphaned by earlier tests keep resending for a while; after the
    # fault's flush their packets would race the probe for each freed slot.
    for guest in lab.guests:
        lab.run(guest, ["ss", "-K", "-t", "state", "all"], check=False)
    serve("vm3")
    done = threading.Event()

    limits = set()

    def free_one_slot_per_second():
        # The fault fills hv1's table with phantom connections from 203.0.113.0/24;
        # freeing one a second lets one connect in after its SYN was retransmitted.
        for host in range(1, 60):
            limits.add(Path(CONNTRACK_MAX).read_text())
            if done.wait(1.0):
                return
            lab.run("hv1", ["conntrack", "-D", "-s", f"203.0.113.{host}"], check=False)

    freer = threading.Thread(target=free_one_slot_per_second, daemon=True)

    def phase(name):
        if name == "start":
            lab.add_fault("conntrack-full", at="hv1:br0")
            freer.start()
        else:
            done.set()

    try:
        r = probe(lab, "vm1", "vm3", pattern="tcp-crr", duration_s=2.5, warmup_s=0, on_phase=phase)
    finally:
        done.set()
    freer.join()
    # nf_conntrack_max is global; global_settings kept every other lab's fault off it.
    assert len(limits) == 1, sorted(limits)
    syn = timer_tails(r, "connect")
    assert syn and all(t.signature.startswith("syn-retrans-") for t in syn), \
        (r.tails, r.transactions, r.errors, r.connect, r.notes)
    assert sum(t.confirmed_by_tcp_info for t in syn) == sum(t.count for t in syn)
    assert r.tcp.syn_retrans_delta >= sum(t.count * t.expected_retransmits for t in syn)
    assert r.connect.max_us >= 900_000
    # The band each connect fell in (the kernel's SYN schedule, with its linear
    # timeouts) says how many SYNs were retransmitted; TCP_INFO counted the same.
    table = bands(rto_min_ms=r.rto_min_ms, syn_linear_timeouts=r.syn_linear_timeouts)
    for s in r.slow:
        if s.phase == "connect":
            assert classify(s.latency_us / 1000, "connect", table).expected_retransmits == s.client_retrans_delta


def test_bsp_efficiency_falls_when_loss_adds_tails(lab, serve):
    serve("vm3")
    clean = probe(lab, "vm1", "vm3", pattern="bsp", streams=4, compute_ms=2, duration_s=1.0, warmup_s=0.1)
    lab.add_fault("loss", at="hv1:vm1-p", percent=3)
    lossy = probe(lab, "vm1", "vm3", pattern="bsp", streams=4, compute_ms=2, duration_s=1.5, warmup_s=0)
    assert 0 < lossy.bsp.efficiency < clean.bsp.efficiency < 1
    assert lossy.bsp.efficiency < 0.6 * clean.bsp.efficiency
    assert lossy.bsp.communication.max_us > 180_000
    assert timer_tails(lossy)


def test_cli_takes_lab_node_names_and_refuses_unknown_guests(lab, serve, capsys):
    import json

    from vnetdiag.cli.main import main

    serve("vm3")
    assert main(["probe", "vm3", "--netns", "vm1", "--port", str(PORT), "--duration", "0.3", "--warmup", "0",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == lab.ip("vm3") and doc["transactions"] > 0
    assert main(["probe", "vm3", "--netns", "vm9", "--port", str(PORT), "--duration", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no network namespace 'vm9'" in err and f"{lab.prefix}:vm1" in err


def test_refused_connects_are_retried_and_counted_not_fatal(lab, serve):
    # Every other SYN to the server is answered with ICMP host-unreachable (a router
    # refusing some flows, as a policy route does): the control connection's first
    # attempt and one of each stream's fail at once with EHOSTUNREACH.
    serve("vm3")
    rule = ["INPUT", "-p", "tcp", "--syn", "--dport", str(PORT), "-m", "statistic", "--mode", "nth", "--every", "2",
            "--packet", "0", "-j", "REJECT", "--reject-with", "icmp-host-unreachable"]
    lab.run("vm3", ["iptables", "-w", "-I", *rule])
    try:
        r = probe(lab, "vm1", "vm3", streams=2, duration_s=0.5, warmup_s=0.1)
        refused = lab.run("vm3", ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"]).stdout
    finally:
        lab.run("vm3", ["iptables", "-w", "-D", *rule])
    count = int(next(ln.split()[0] for ln in refused.splitlines() if "reject-with icmp-host-unreachable" in ln))
    assert r.transactions > 100 and r.shortfall is None, r.shortfall
    # The kernel's count of refused SYNs: the control connection's and the streams' (counted as errors).
    assert count >= 2 and r.errors == count - 1, (count, r.errors)
