"""diagnose towards a QEMU guest (a far end: vnetdiag's server cannot run in it):
server-less tcp-syn handshakes from a namespace node, the eBPF tracer taking
their packets as the probe's, verdicts on the tap or macvtap in front of the
VM, and "inside the guest" when the host dropped nothing; and compare with
the VMs among its paths (server-less as well).

The lab is tests/integration/vm_lab.toml (one VM on a tap, one on a macvtap)
under its own prefix; both VMs boot once for the module, in parallel (TCG
here, ~10 s). Skipped with the reason where QEMU or the guest image cannot
be had.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from labtraffic import ping
from test_vm import TOPOLOGY, VNETDIAG, _need_qemu, _prefix, _spec_data  # noqa: F401 - TOPOLOGY: the file booted

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def vmlab():
    _need_qemu()
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    prefix = _prefix("vd")
    lab_mod.down(prefix)  # what an interrupted run left
    # pytest runs the teardown after the yield whatever the tests did.
    yield lab_mod.up(spec.parse(_spec_data(prefix), "<test_vm_diagnose>"))
    assert not lab_mod.down(prefix), "the VM lab's teardown left something"


@pytest.fixture
def lab(vmlab):
    vmlab.clear_faults()
    # The bridge and ns1's neighbour table know both VMs before any fault, freshly:
    # a STALE entry is not confirmed by a ping reply, and would be probed (and fail,
    # NEIGH_FAILED at ns1's eth0) while a test keeps the VM paused.
    vmlab.run("ns1", ["ip", "neigh", "flush", "dev", "eth0"])
    for vm in ("vm1", "vm2"):
        assert ping(vmlab, "ns1", vm, count=1, wait_s=2) == (1, 1), vm
    yield vmlab
    vmlab.clear_faults()


def _diagnose(lab, to: str, duration_s: float = 1.5, *extra: str) -> tuple[int, dict, str]:
    out = subprocess.run([VNETDIAG, "diagnose", "--json", "--backend", "ebpf", "--from", f"{lab.prefix}:ns1",
                          "--to", to, "--duration", str(duration_s), *extra], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def test_clean_run_to_a_vm_by_address_is_exit_0_with_no_verdict(lab):
    rc, doc, err = _diagnose(lab, lab.ip("vm1"))  # a bare address no namespace owns
    hs = doc["symptom"]["handshake"]
    assert rc == 0 and doc["verdicts"] == [] and doc["shortfall"] is None, (doc["verdicts"], doc["shortfall"])
    assert doc["pattern"] == "tcp-syn" and hs["answers"]["rst"] == hs["attempts"] > 100 and hs["timeouts"] == 0
    assert doc["target"] == lab.ip("vm1") and doc["backend"] == "ebpf"
    forward = [h["device"] for h in doc["path"] if h["direction"] == "forward"]
    assert forward[-1] == "vm1-t0", forward


def test_loss_on_the_tap_is_the_top_verdict_with_the_probes_own_packets(lab, tmp_path):
    lab.add_fault("loss", at="hv1:vm1-t0", percent=10, direction="out")
    # NS:ADDRESS where the namespace (the hypervisor) does not own the address: a far end.
    report, bundle = tmp_path / "far.html", tmp_path / "far.bundle"
    rc, doc, err = _diagnose(lab, f"{lab.netns('hv1')}:{lab.ip('vm1')}", 1.5, "--report", str(report),
                             "--save-bundle", str(bundle))
    assert rc == 1, err
    # The bundle replays the handshakes' figures too, not only the verdicts.
    again = subprocess.run([VNETDIAG, "diagnose", "--json", "--replay", str(bundle)], capture_output=True, text=True,
                           timeout=60)
    replayed = json.loads(again.stdout)
    assert again.returncode == 1 and replayed["symptom"]["handshake"] == doc["symptom"]["handshake"], again.stderr
    assert replayed["verdicts"][0] == doc["verdicts"][0]
    # The report draws the handshakes' round trips, every answered one, against the SYN timeout.
    page = report.read_text()
    hs = doc["symptom"]["handshake"]
    drawn = [int(n.replace(",", "")) for n in re.findall(r": ([\d,]+) transactions</title>", page)]
    assert sum(drawn) == hs["answered"] > 0 and "SYN RTO 1 s" in page and "Handshake round trips" in page
    assert f"server-less: {hs['attempts']} attempts to port 9, {hs['timeouts']} unanswered" in page
    top = doc["verdicts"][0]
    assert (top["device"], top["netns"], top["reason"]) == ("vm1-t0", lab.netns("hv1"), "NETFILTER_DROP"), top
    assert top["probe_packets"] > 0 and top["confidence"] >= 0.9
    # Each dropped SYN was retransmitted, except the last SYN of an attempt that timed out (closed at 3 s,
    # as the kernel's second retransmission was due): the prober's count and the traced one agree that far.
    syn, timeouts = doc["symptom"]["syn_retrans"], doc["symptom"]["handshake"]["timeouts"]
    assert top["probe_packets"] - timeouts <= syn <= top["probe_packets"], (doc["symptom"], top)


def test_loss_on_the_tap_probed_with_the_server_in_the_guest_is_tcp_rr_with_rto_tails(lab):
    """vm1 runs vnetdiag's server (the host's Python over virtio-9p): diagnose
    probes it with tcp-rr, as it would a namespace, and the lost segments are
    the probe's own packets at the tap, as many as the rule dropped."""
    lab.add_fault("loss", at="hv1:vm1-t0", percent=5, direction="out")
    rc, doc, err = _diagnose(lab, f"{lab.prefix}:vm1", 2.0)
    assert rc == 1, err
    assert doc["pattern"] == "tcp-rr"
    assert "vm1 is a VM: probed vnetdiag's server in its guest (port 7735)" in doc["notes"]
    assert doc["symptom"]["transactions"] > 0 and doc["symptom"]["tails_by_signature"].get("min-rto", 0) > 0
    top = doc["verdicts"][0]
    assert (top["device"], top["netns"], top["reason"]) == ("vm1-t0", lab.netns("hv1"), "NETFILTER_DROP"), top
    assert top["confidence"] >= 0.9
    rule = next(e["text"] for e in top["evidence"] if e["text"].startswith("iptables -t mangle POSTROUTING"))
    assert re.search(rf"\+{top['probe_packets']} packets dropped by", rule), (top["probe_packets"], rule)


def test_paused_qemu_behind_a_macvtap_full_ring_is_the_top_verdict(lab):
    lab.add_fault("vm-pause", at="vm2", queue_len=16)
    rc, doc, err = _diagnose(lab, f"{lab.prefix}:vm2")
    assert rc == 1, err
    top = doc["verdicts"][0]
    # Unicast frames are last seen on the macvtap's lower device or on the macvtap (test_vm.py).
    assert top["device"] in ("mvtap0", "mvl0") and top["reason"] == "FULL_RING", top
    assert top["probe_packets"] > 0 and top["confidence"] >= 0.9
    assert doc["symptom"]["handshake"]["answers"] == {}


def test_paused_qemu_behind_a_short_tap_queue_is_full_ring_at_the_tap_with_the_ring_full(lab):
    """With the tap's queue shrunk to 8 frames, the paused reader's ring fills:
    tun_net_xmit drops the rest of the probe's SYNs with FULL_RING, and the
    verdict reads the ring at those drops (8 of 8: the reader is slow)."""
    lab.add_fault("vm-pause", at="vm1", queue_len=8)
    rc, doc, err = _diagnose(lab, f"{lab.prefix}:vm1", 1.5, "--pattern", "tcp-syn")  # server-less
    assert rc == 1, err
    top = doc["verdicts"][0]
    assert (top["device"], top["netns"], top["reason"]) == ("vm1-t0", lab.netns("hv1"), "FULL_RING"), top
    assert top["probe_packets"] > 0 and top["confidence"] >= 0.9
    texts = [e["text"] for e in top["evidence"]]
    assert any("tun_net_xmit" in t and "ring 8/8 at the worst" in t for t in texts), texts
    # Nothing else crosses the tap: the traced drops are what its counters count, one
    # for one. Those are tun's own (tx_dropped) and its qdisc's (pfifo_fast drops),
    # two counters of different packets (ci22: 38 + 1 against 39 traced).
    traced = sum(int(m.group(1)) for t in texts if (m := re.match(r"(\d+) x skb:kfree_skb ", t)))
    tun = sum(int(m.group(1)) for t in texts if (m := re.search(r"vm1-t0 in .*\btx_dropped \+(\d+)", t)))
    qdisc = sum(int(m.group(1)) for t in texts if (m := re.fullmatch(r"qdisc \S+ \S+ on vm1-t0: drops \+(\d+)", t)))
    assert traced == tun + qdisc > 0, texts


def test_paused_qemu_behind_a_tap_is_loss_inside_the_guest(lab):
    # What the kernel does: tun queues the frames for the reader (QEMU) that no
    # longer reads, up to the tap's txqueuelen (1000); a few dozen SYNs do not
    # fill it, so the host drops nothing and the tap's TX (frames read) stands still.
    lab.add_fault("vm-pause", at="vm1")
    rc, doc, err = _diagnose(lab, f"{lab.prefix}:vm1", 1.5, "--pattern", "tcp-syn")  # server-less
    assert rc == 1, err
    # Verdicts on other traffic's drops only (IPv6 multicast on the bridge) explain nothing.
    probes = [v for v in doc["verdicts"] if v["on_path"] and v["probe_packets"]]
    if probes:  # the ring filled after all: then the tap is where they died
        assert probes[0]["device"] == "vm1-t0", probes[0]
        return
    assert doc["measured"] is False
    short = doc["shortfall"]
    assert "the loss is past vm1-t0" in short and "inside the guest" in short, short
    hs = doc["symptom"]["handshake"]
    assert hs["answers"] == {} and hs["timeouts"] == hs["attempts"] > 0
    # QEMU may have read a frame as it was stopped; no more.
    assert f"fewer than the {hs['attempts']} SYNs the probe sent it" in short, short


def test_guest_tx_stall_is_seen_by_diagnose_and_by_watch_which_runs_the_failover_hook(lab, tmp_path):
    from watchproc import WatchProc, pinger, wait_for

    lab.add_fault("guest-tx-stall", at="vm1")
    # The guest's own qdisc passes nothing: on the host, vm1-t0's RX (what the guest sends) freezes.
    rc, doc, err = _diagnose(lab, f"{lab.prefix}:vm1", 1.5, "--pattern", "tcp-syn")  # server-less
    assert rc == 1, err
    top = doc["verdicts"][0]
    assert (top["netns"], top["device"], top["cause"]) == (lab.netns("hv1"), "vm1-t0", "guest-tx-stall"), top
    hs = doc["symptom"]["handshake"]
    assert hs["answers"] == {} and hs["timeouts"] == hs["attempts"] > 0
    # Each SYN, and each of its retransmissions, was given to the guest: the count is at least that.
    assert top["count"] >= hs["attempts"] + doc["symptom"]["syn_retrans"] - 1, (top, doc["symptom"])
    assert top["on_path"] and 0.6 <= top["confidence"] < 0.9, top  # observed state, not the probe's packets
    assert doc["shortfall"] is None, doc["shortfall"]

    # watch: the alert, and the operator's hook (a failover) gets the alert document on stdin.
    hook = tmp_path / "failover.json"
    ping = pinger(lab, "ns1", "vm1", 0.1)
    w = WatchProc(tmp_path, f"""
interval_s = 0.5
namespaces = ["{lab.netns('hv1')}"]
[[detectors.guest_tx_stall.actions]]
kind = "exec"
command = ["sh", "-c", "cat > {hook}"]
""")
    try:
        raised = wait_for(lambda: w.alerts("raised", "guest_tx_stall"), 15, "the guest TX stall alert")[0]["alert"]
        wait_for(lambda: hook.exists() and hook.read_text().endswith("}"), 10, "the failover hook to run")
        lab.clear_faults()  # the guest sends again: the alert clears
        wait_for(lambda: w.alerts("cleared", "guest_tx_stall"), 15, "the alert to clear")
    finally:
        ping.kill()
        assert w.stop() == 0
    assert (raised["subject"], raised["kind"]) == (f"{lab.netns('hv1')}/vm1-t0", "guest-silent"), raised
    assert raised["evidence"]["from_guest_frames"] == 0 and raised["evidence"]["to_guest_frames"] >= 3
    sent = json.loads(hook.read_text())
    assert sent["detector"] == "guest_tx_stall" and sent["device"] == "vm1-t0", sent
    # Once, for vm1 only: vm2's macvtap (whose guest sends) raised nothing.
    assert len(w.alerts("raised", "guest_tx_stall")) == 1, w.alerts("raised", "guest_tx_stall")


def test_compare_a_namespace_path_and_both_vms_reports_the_lossy_tap_worse(lab, tmp_path):
    """compare with VMs among the paths: every path probed server-less (the
    guests run nothing of ours), interleaved; loss towards the tap VM makes that
    path, and only that one, worse."""
    lab.add_fault("loss", at="hv1:vm1-t0", percent=20, direction="out")
    page = tmp_path / "compare.html"
    node = lambda n: f"{lab.prefix}:{n}"  # noqa: E731
    r = subprocess.run([VNETDIAG, "compare", "--json", "--path", f"veth={node('ns1')}->{node('ns2')}",
                        "--path", f"tap-vm={node('ns1')}->{node('vm1')}",
                        "--path", f"macvtap-vm={node('ns1')}->{node('vm2')}",
                        "--duration", "1.2", "--slice", "0.2", "--html", str(page)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "tap-vm, macvtap-vm: a far end" in r.stderr and "tcp-syn handshakes instead of tcp-rr" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["pattern"] == "tcp-syn" and doc["rounds"] == 6
    paths = {p["label"]: p for p in doc["paths"]}
    assert paths["tap-vm"]["lost"] > 0 and any(k.startswith("syn-retrans-") for k in paths["tap-vm"]["tails"])
    assert paths["veth"]["lost"] == 0 and paths["macvtap-vm"]["lost"] == 0
    diff = {(d["path"], d["metric"]): d for d in doc["differences"]}
    worse = {p for (p, m), d in diff.items() if m == "loss_rate" and d["significant"] and d["low"] > 0}
    assert worse == {"tap-vm"}
    assert diff[("tap-vm", "p99_us")]["significant"] and diff[("tap-vm", "p99_us")]["low"] > 900_000
    kinds = {label: p["build"]["kinds"] for label, p in paths.items()}
    assert "tun" in kinds["tap-vm"] and "macvtap" in kinds["macvtap-vm"] and kinds["veth"][0] == "veth"
    tap = paths["tap-vm"]["build"]
    assert [h["device"] for h in tap["hops"]][-1] == "vm1-t0" and {h["direction"] for h in tap["hops"]} == {"forward"}
    assert tap["notes"] == ["reverse: starts inside the far end, which is not observable from here"]
    assert paths["veth"]["build"]["complete"] and {h["direction"] for h in paths["veth"]["build"]["hops"]} == {
        "forward", "reverse"}
