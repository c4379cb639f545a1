"""analyze/far_end.py without root: the handshake symptom and the "inside the
guest" conclusion, from records shaped as a diagnose run towards a VM makes them
(the figures are those of the paused-QEMU run in docs/diagnose.md)."""

from __future__ import annotations

from types import SimpleNamespace

from vnetdiag.analyze.far_end import front_device, handshake_symptom, far_shortfall
from vnetdiag.model.diagnosis import PathHop
from vnetdiag.model.handshake import HandshakeResult
from vnetdiag.probe import histograms as H

PATH = (PathHop(netns="vnd-ns1", netns_inode=11, device="eth0", kind="veth"),
        PathHop(netns="vnd-hv1", netns_inode=22, device="br0", kind="bridge"),
        PathHop(netns="vnd-hv1", netns_inode=22, device="vm1-t0", kind="tun"),
        PathHop(netns="vnd-hv1", netns_inode=22, device="vm1-t0", kind="tun", direction="reverse"))


def _result(*, rtts_ms=(), timeouts=0, retrans=None) -> HandshakeResult:
    hist = H.new_histogram()
    for ms in rtts_ms:
        hist.record_value(int(ms * 1e6))
    return HandshakeResult(target="198.51.100.11", port=9, pattern="tcp-syn", netns=None,
                           attempts=len(rtts_ms) + timeouts, answers={"rst": len(rtts_ms)} if rtts_ms else {},
                           timeouts=timeouts, errors=0, timeout_s=3.0, interval_s=0.02, duration_s=2.5,
                           latency=H.summarize(hist), histogram=H.log_bins(hist), syn_retransmits=retrans or {},
                           slowest_ms=tuple(sorted(rtts_ms, reverse=True)))


def test_retransmitted_handshakes_are_tails_and_the_kernel_count_is_the_loss():
    r = _result(rtts_ms=(0.3,) * 8 + (1000.4, 1000.5), retrans={"0": 8, "1": 2})
    s = handshake_symptom(r, pattern="tcp-syn", tcp_moves={"TCPSynRetrans": 3})
    assert (s.transactions, s.tails, s.syn_retrans, s.errors) == (10, 2, 3, 0)
    assert s.tails_by_signature == {"syn-retrans x1": 2} and s.losses == 3


def test_unanswered_handshakes_with_nothing_on_the_host_path_are_inside_the_guest():
    r = _result(timeouts=16)
    s = handshake_symptom(r, pattern="tcp-syn", tcp_moves={"TCPSynRetrans": 32})
    assert s.errors == 16 and s.syn_retrans == 32
    text = far_shortfall((), s, r, PATH)
    assert text.startswith("the loss is past vm1-t0 (vnd-hv1), inside the guest, which vnetdiag cannot observe")
    assert "16 of 16 tcp-syn attempts unanswered, 32 SYN retransmits" in text
    assert front_device(PATH).device == "vm1-t0"


def test_a_verdict_on_the_path_or_a_clean_window_says_nothing_about_the_guest():
    r = _result(timeouts=16)
    s = handshake_symptom(r, pattern="tcp-syn")
    assert far_shortfall((SimpleNamespace(on_path=True, probe_packets=16, background=0, count=16),), s, r, PATH) is None
    clean = _result(rtts_ms=(0.3,) * 5, retrans={"0": 5})
    assert far_shortfall((), handshake_symptom(clean, pattern="tcp-syn"), clean, PATH) is None


def test_unanswered_echoes_are_lost_replies():
    s = handshake_symptom(_result(timeouts=4), pattern="icmp-echo")
    assert (s.udp_lost, s.syn_retrans, s.errors) == (4, 0, 4)


def test_attempts_our_kernel_refused_are_a_shortfall_even_with_a_verdict():
    r = HandshakeResult(**{**{f: getattr(_result(), f) for f in HandshakeResult.__slots__}, "attempts": 5, "errors": 5})
    text = far_shortfall((SimpleNamespace(on_path=True),), handshake_symptom(r, pattern="tcp-syn"), r, ())
    assert text.startswith("none of the 5 tcp-syn attempts to 198.51.100.11 could be sent")


def test_a_verdict_on_other_traffics_drops_only_does_not_explain_the_loss():
    r = _result(timeouts=16)
    noise = SimpleNamespace(on_path=True, probe_packets=0, background=1, count=1)  # IPv6 multicast on the bridge
    assert "inside the guest" in far_shortfall((noise,), handshake_symptom(r, pattern="tcp-syn"), r, PATH)


def test_the_probes_packets_dying_for_want_of_the_guests_mac_point_into_the_guest():
    from vnetdiag.analyze.far_end import neighbour_note

    failed = SimpleNamespace(reason="NEIGH_FAILED", probe_packets=16, count=16, device="eth0")
    assert "did not answer ARP/ND" in neighbour_note((failed,), "198.51.100.11")
    assert neighbour_note((SimpleNamespace(reason="FULL_RING", probe_packets=3),), "198.51.100.11") is None
