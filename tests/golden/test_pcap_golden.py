"""Recorded real captures (tests/golden/pcap, made by record.py from lab
traffic) against tshark: conversations and retransmitted frames must be equal."""

from __future__ import annotations

import gzip
import shutil
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pcap_reference as ref  # noqa: E402

from vnetdiag.capture import analyze_file  # noqa: E402
from vnetdiag.model import signatures as sig  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "pcap"
FILES = ["clean.pcap", "loss-vxlan.pcap", "loss-nano.pcap.gz", "conntrack-full.pcap", "two-ifaces.pcapng",
         "dsack-spurious.pcap", "ipv6-loss.pcap"]
needs_tshark = pytest.mark.skipif(ref.TSHARK is None, reason="tshark not installed")

_reports: dict[str, object] = {}


def report(name: str):
    if name not in _reports:
        _reports[name] = analyze_file(GOLDEN / name)
    return _reports[name]


def _plain(name: str, tmp_path: Path) -> str:
    """tshark reads gzip too, but give it the same bytes uncompressed to be sure."""
    if not name.endswith(".gz"):
        return str(GOLDEN / name)
    out = tmp_path / name[:-3]
    with gzip.open(GOLDEN / name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return str(out)


@needs_tshark
@pytest.mark.parametrize("name", FILES)
def test_conversations_equal_tshark(name, tmp_path):
    path = _plain(name, tmp_path)
    rep = report(name)
    for proto in ("tcp", "udp"):
        rows = ref.conv(path, proto)
        mine = {frozenset((c.a, c.b)): c for c in rep.conversations if c.proto == proto}
        assert len(mine) == len(rows), proto
        for r in rows:
            c = mine[frozenset((r["a"], r["b"]))]
            fwd = c.a == r["a"]
            pab, bab = (c.packets_ab, c.bytes_ab) if fwd else (c.packets_ba, c.bytes_ba)
            pba, bba = (c.packets_ba, c.bytes_ba) if fwd else (c.packets_ab, c.bytes_ab)
            assert (pab, ref.tshark_size(bab), pba, ref.tshark_size(bba)) == \
                (r["frames_ab"], r["bytes_ab_text"], r["frames_ba"], r["bytes_ba_text"]), (proto, r, c)
            assert c.start_s == pytest.approx(r["start_s"], abs=2e-6)
            assert c.duration_s == pytest.approx(r["duration_s"], abs=1e-4)


@needs_tshark
@pytest.mark.parametrize("name", FILES)
def test_exact_bytes_per_tcp_stream_equal_tshark(name, tmp_path):
    theirs = ref.stream_bytes(_plain(name, tmp_path))
    mine = {}
    for c in report(name).conversations:
        if c.proto == "tcp":
            mine[c.stream] = {k: v for k, v in {c.a: (c.packets_ab, c.bytes_ab),
                                                c.b: (c.packets_ba, c.bytes_ba)}.items() if v[0]}
    assert mine == theirs


@needs_tshark
@pytest.mark.parametrize("name", FILES)
def test_retransmitted_frames_equal_tshark(name, tmp_path):
    path = _plain(name, tmp_path)
    rep = report(name)
    assert {r.frame for r in rep.retransmissions} == ref.retransmitted_frames(path)
    spurious = {r.frame for r in rep.retransmissions if r.kind == "spurious"}
    assert spurious == ref.retransmitted_frames(path, "tcp.analysis.spurious_retransmission")
    fast = {r.frame for r in rep.retransmissions if r.kind == "fast"}
    assert fast == ref.retransmitted_frames(path, "tcp.analysis.fast_retransmission")


def test_already_acknowledged_data_is_spurious_before_out_of_order():
    """Wireshark 4.0 checks 'spurious' before 'out-of-order': frame 710 resends
    data 25 us after the highest segment (out-of-order timing) but it had been
    acknowledged (D-SACK follows)."""
    rep = report("dsack-spurious.pcap")
    assert [(r.frame, r.kind) for r in rep.retransmissions] == [(710, "spurious")]


def test_ipv6_endpoints():
    rep = report("ipv6-loss.pcap")
    assert {c.proto for c in rep.conversations} >= {"tcp", "udp"}
    tcp = next(c for c in rep.conversations if c.proto == "tcp")
    assert tcp.a.startswith("[2001:db8:77::1]:") and tcp.b == "[2001:db8:77::2]:7400"
    assert rep.retransmissions and all(r.flow.count("[2001:db8:77::") == 2 for r in rep.retransmissions)


def test_conntrack_full_shows_syn_retransmissions_one_second_apart():
    rep = report("conntrack-full.pcap")
    syn = [r for r in rep.retransmissions if r.syn]
    assert len(syn) >= 60
    assert all(r.signature == sig.syn_retrans(r.attempt) for r in syn)
    assert all(900 <= r.gap_ms <= 1600 for r in syn)
    assert {r.attempt for r in syn} >= {1, 2}


def test_loss_over_vxlan_is_decapsulated_and_shows_the_200ms_rto():
    rep = report("loss-vxlan.pcap")
    tcp = [c for c in rep.conversations if c.proto == "tcp"]
    assert tcp and all(c.tunnel is not None and c.tunnel.vni == 100 for c in tcp)
    assert {tcp[0].tunnel.outer_a, tcp[0].tunnel.outer_b} == {"192.0.2.1", "192.0.2.2"}
    assert any(c.vxlan_outer and c.proto == "udp" for c in rep.conversations)
    assert rep.signatures.get(sig.MIN_RTO, 0) >= 1
    rto = [r for r in rep.retransmissions if r.signature == sig.MIN_RTO]
    assert all(180 <= r.gap_ms <= 320 for r in rto)


def test_request_response_latency_and_handshake_rtt():
    rep = report("clean.pcap")
    (flow,) = rep.flows
    assert flow.retransmissions == 0 and flow.handshake_rtt_us is not None and flow.handshake_rtt_us > 0
    rr = flow.request_response
    assert rr is not None and rr.count == 50 and 0 < rr.p50_us <= rr.p99_us <= rr.max_us


def test_two_interfaces_with_their_own_link_types_and_resolutions():
    cap = report("two-ifaces.pcapng").capture
    assert cap.format == "pcapng"
    assert cap.link_types == (1, 276)
    assert cap.timestamp_resolution_ns == (1000.0, 1.0)
    assert cap.skipped == 0 and not cap.warnings
    if ref.TSHARK:  # the ARP frames
        assert cap.undecoded == len(ref.frames(str(GOLDEN / "two-ifaces.pcapng"), "not ip and not ipv6"))


def test_gzip_is_read_like_the_plain_file(tmp_path):
    plain = _plain("loss-nano.pcap.gz", tmp_path)
    a, b = report("loss-nano.pcap.gz"), analyze_file(plain)
    assert a.capture.compressed and not b.capture.compressed
    assert a.capture.timestamp_resolution_ns == (1.0,)
    assert a.conversations == b.conversations and a.retransmissions == b.retransmissions


def _swap_pcap(src: Path, dst: Path, *, nano: bool = False) -> None:
    """Rewrite a little-endian pcap big-endian (and, optionally, nanosecond)."""
    data = src.read_bytes()
    magic, major, minor, zone, sigfigs, snap, net = struct.unpack_from("<IHHiIII", data)
    out = [struct.pack(">IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, major, minor, zone, sigfigs, snap, net)]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, cap, wire = struct.unpack_from("<IIII", data, pos)
        out.append(struct.pack(">IIII", sec, frac * 1000 if nano else frac, cap, wire))
        out.append(data[pos + 16: pos + 16 + cap])
        pos += 16 + cap
    dst.write_bytes(b"".join(out))


@pytest.mark.parametrize("nano", [False, True])
def test_big_endian_and_nanosecond_pcap_read_the_same(tmp_path, nano):
    dst = tmp_path / "be.pcap"
    _swap_pcap(GOLDEN / "loss-vxlan.pcap", dst, nano=nano)
    a, b = report("loss-vxlan.pcap"), analyze_file(dst)
    assert b.capture.timestamp_resolution_ns == ((1.0,) if nano else (1000.0,))
    assert a.conversations == b.conversations and a.retransmissions == b.retransmissions


def test_small_chunks_give_the_same_result():
    a = report("two-ifaces.pcapng")
    b = analyze_file(GOLDEN / "two-ifaces.pcapng", chunk_bytes=300)
    assert a.conversations == b.conversations and a.flows == b.flows
    c = analyze_file(GOLDEN / "loss-vxlan.pcap", chunk_bytes=1000)
    assert c.retransmissions == report("loss-vxlan.pcap").retransmissions


@needs_tshark
@pytest.mark.parametrize("name", ["clean.pcap", "loss-vxlan.pcap"])
def test_handshake_rtt_equals_tshark_initial_rtt(name):
    out = ref._run(["-r", str(GOLDEN / name), "-Y", "tcp.analysis.initial_rtt", "-T", "fields",
                    "-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"])
    theirs = {int(s): float(v) * 1e6 for s, v in (line.split("\t") for line in out.split("\n") if line)}
    mine = {f.stream: f.handshake_rtt_us for f in report(name).flows if f.handshake_rtt_us is not None}
    assert mine.keys() == theirs.keys()
    for s in mine:
        assert mine[s] == pytest.approx(theirs[s], abs=0.01)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) not installed")
def test_pcapng_written_by_editcap_reads_like_the_pcap(tmp_path):
    """Large enough (> 64 KiB) for the vectorised block chain to be used."""
    import subprocess

    out = tmp_path / "loss.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(GOLDEN / "loss-vxlan.pcap"), str(out)], check=True)
    a, b = report("loss-vxlan.pcap"), analyze_file(out)
    assert b.capture.format == "pcapng"
    assert a.conversations == b.conversations and a.retransmissions == b.retransmissions
