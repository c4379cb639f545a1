"""Damaged and hostile capture files: a clear error or warnings with counts,
never a traceback. Inputs are the recorded real captures, cut or corrupted."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vnetdiag.capture import analyze_file
from vnetdiag.errors import BadInputError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pcap"
CLEAN = (GOLDEN / "clean.pcap").read_bytes()
NG = (GOLDEN / "two-ifaces.pcapng").read_bytes()


def _records(data: bytes) -> list[int]:
    """Offsets of the pcap records of a little-endian pcap."""
    pos, out = 24, []
    while pos + 16 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return out


def _blocks(data: bytes) -> list[tuple[int, int, int]]:
    pos, out = 0, []
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        out.append((pos, btype, blen))
        pos += blen
    return out


def test_text_file_is_refused_with_a_hint(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a capture\n")
    with pytest.raises(BadInputError, match="not a pcap or pcapng file"):
        analyze_file(p)


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2\xa1\x02\x00", b"\x1f\x8b\x08\x00garbage"])
def test_empty_short_or_broken_gzip_is_an_error(tmp_path, content):
    p = tmp_path / "x.pcap"
    p.write_bytes(content)
    with pytest.raises(BadInputError):
        analyze_file(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        analyze_file(tmp_path / "nope.pcap")
    with pytest.raises(BadInputError, match="directory"):
        analyze_file(tmp_path)


def test_truncated_last_record_is_skipped_and_counted():
    recs = _records(CLEAN)
    cut = CLEAN[: recs[-1] + 20]
    rep = analyze_file(cut)
    assert rep.capture.packets == len(recs) - 1
    assert rep.capture.skipped == 1
    assert any("truncated" in w for w in rep.capture.warnings)


def test_absurd_caplen_stops_reading_with_a_warning():
    recs = _records(CLEAN)
    bad = bytearray(CLEAN)
    struct.pack_into("<I", bad, recs[10] + 8, 0x7FFFFFF0)
    rep = analyze_file(bytes(bad))
    assert rep.capture.packets == 10
    assert rep.capture.skipped == 1
    assert any("corrupt pcap record header at packet 11" in w for w in rep.capture.warnings)


def test_zero_caplen_record_is_a_packet_that_is_not_decoded():
    recs = _records(CLEAN)
    pos = recs[5]
    caplen = struct.unpack_from("<I", CLEAN, pos + 8)[0]
    bad = bytearray(CLEAN[: pos + 8]) + struct.pack("<I", 0) + CLEAN[pos + 12: pos + 16] + CLEAN[pos + 16 + caplen:]
    rep = analyze_file(bytes(bad))
    good = analyze_file(CLEAN)
    assert rep.capture.packets == good.capture.packets
    assert rep.capture.undecoded == good.capture.undecoded + 1


def test_unknown_link_type_is_counted_not_analysed():
    bad = bytearray(CLEAN)
    struct.pack_into("<I", bad, 20, 147)  # LINKTYPE_USER0
    rep = analyze_file(bytes(bad))
    assert rep.capture.packets == len(_records(CLEAN))
    assert rep.capture.undecoded == rep.capture.packets
    assert not rep.conversations
    assert any("unsupported link type 147" in w for w in rep.capture.warnings)


def test_unknown_pcapng_block_is_skipped_with_a_warning():
    pos, _, blen = _blocks(NG)[3]
    custom = struct.pack("<II", 0x0BAD0001, 16) + b"\x00" * 4 + struct.pack("<I", 16)
    bad = NG[:pos] + custom + NG[pos:]
    rep, good = analyze_file(bad), analyze_file(NG)
    assert rep.conversations == good.conversations
    assert any("unknown type: 0x0bad0001 x1" in w for w in rep.capture.warnings)


def test_corrupt_pcapng_block_length_stops_with_a_warning():
    blocks = _blocks(NG)
    pos = blocks[50][0]
    bad = bytearray(NG)
    struct.pack_into("<I", bad, pos + 4, 7)
    rep = analyze_file(bytes(bad))
    assert 0 < rep.capture.packets < len(blocks)
    assert rep.capture.skipped == 1 and any("bad length 7" in w for w in rep.capture.warnings)


def test_epb_with_unknown_interface_is_skipped():
    blocks = [b for b in _blocks(NG) if b[1] == 6]
    bad = bytearray(NG)
    struct.pack_into("<I", bad, blocks[0][0] + 8, 9)
    rep = analyze_file(bytes(bad))
    assert rep.capture.skipped == 1 and rep.capture.packets == len(blocks) - 1


def test_damaged_gzip_stream_reads_what_it_can(tmp_path):
    data = gzip.compress(CLEAN)
    p = tmp_path / "x.pcap.gz"
    p.write_bytes(data[: len(data) * 2 // 3])
    rep = analyze_file(p)
    assert 0 < rep.capture.packets < len(_records(CLEAN))
    assert rep.capture.warnings


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not a capture")
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "pcap", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "hint:" in r.stderr and "Traceback" not in r.stderr


def test_cli_warnings_go_to_stderr_and_json_stays_clean(tmp_path):
    recs = _records(CLEAN)
    p = tmp_path / "cut.pcap"
    p.write_bytes(CLEAN[: recs[-1] + 20])
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "pcap", str(p), "--json"],
                       capture_output=True, text=True)
    import json

    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["schema"] == "vnetdiag.pcap/1"
    assert doc["capture"]["skipped"] == 1 and "truncated" in r.stderr


def test_sequence_numbers_far_apart_do_not_overflow():
    """A segment 2**31 bytes away in a flow with retransmissions (found by fuzzing)."""
    data = bytearray((GOLDEN / "dsack-spurious.pcap").read_bytes())
    for pos in _records(bytes(data))[:50:7]:
        seq = pos + 16 + 14 + 20 + 4  # Ethernet, IPv4 without options, TCP seq
        old = struct.unpack_from(">I", data, seq)[0]
        struct.pack_into(">I", data, seq, (old + 2**31 + 12345) & 0xFFFFFFFF)
    rep = analyze_file(bytes(data))
    assert rep.capture.packets == len(_records(bytes(data))) and rep.retransmissions


@pytest.mark.parametrize("name", ["fuzz-regression-1.bin", "fuzz-regression-2.bin"])
def test_chunking_does_not_change_results(name):
    """Inputs the fuzzer found where batch boundaries changed a conversation's
    start (a vxlan tunnel's earlier frame added after a later one), or let packets
    use an interface described only after them."""
    from vnetdiag.collect import pcap_chain

    data = (GOLDEN / name).read_bytes()
    a = analyze_file(data, chunk_bytes=512)
    saved, pcap_chain.MIN_CHAIN_BYTES = pcap_chain.MIN_CHAIN_BYTES, 0
    try:
        b = analyze_file(data, chunk_bytes=1 << 20)
    finally:
        pcap_chain.MIN_CHAIN_BYTES = saved
    assert a.capture.packets == b.capture.packets and a.conversations == b.conversations


# -- fuzzing ------------------------------------------------------------------
# In the suite: a few hundred inputs. Offline (see docs/pcap.md):
#   PCAP_FUZZ_EXAMPLES=1000000 .venv/bin/python -m pytest tests/unit/test_pcap_bad_input.py -k fuzz
SEEDS = [CLEAN[:3000], NG[:4000], CLEAN[:24] + CLEAN[-400:], NG[:200] + NG[-600:],
         (GOLDEN / "loss-vxlan.pcap").read_bytes()[:3000]]
EXAMPLES = int(os.environ.get("PCAP_FUZZ_EXAMPLES", "300"))


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == 1 and len(data) >= pos + 4:
            data[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 12, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])))
        elif kind == 2:
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(max_size=64))
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
@example(NG[:188] + struct.pack("<III", 6, 12, 0))  # a 12-byte EPB at the very end (found by fuzzing)
def test_fuzz_reader_never_raises_anything_but_bad_input(data):
    from vnetdiag.collect import pcap_chain

    try:
        rep = analyze_file(data, chunk_bytes=512)
        # Again with the vectorised record search on (normally only for big chunks):
        saved, pcap_chain.MIN_CHAIN_BYTES = pcap_chain.MIN_CHAIN_BYTES, 0
        try:
            again = analyze_file(data, chunk_bytes=1 << 20)
        finally:
            pcap_chain.MIN_CHAIN_BYTES = saved
    except BadInputError:
        return
    assert again.capture.packets == rep.capture.packets
    assert again.conversations == rep.conversations
    assert rep.capture.packets >= 0 and rep.capture.skipped >= 0
    for c in rep.conversations:
        assert c.packets_ab >= 0 and c.packets_ba >= 0
