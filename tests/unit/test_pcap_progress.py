"""pcap progress covers every phase with its count (golden captures, no root)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vnetdiag.capture import analyze_file
from vnetdiag.cli.pcap import PhaseProgress

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pcap"


@pytest.mark.parametrize("capture", ["loss-vxlan.pcap", "conntrack-full.pcap", "two-ifaces.pcapng"])
def test_every_phase_is_reported_with_its_count(capture):
    seen: list[tuple[str, int]] = []
    read: list[tuple[int, int]] = []
    # Small chunks so the read phase reports more than once, as on a large file.
    report = analyze_file(GOLDEN / capture, chunk_bytes=4096, phase=lambda n, c: seen.append((n, c)),
                          progress=lambda d, t: read.append((d, t)))
    names = [n for n, _c in seen]
    reads = [c for n, c in seen if n == "read"]
    assert names[: len(reads)] == ["read"] * len(reads) and reads == sorted(reads) and len(reads) > 1
    assert names[len(reads):] == ["streams", "tcp", "records", "done"]
    counts = dict(seen[len(reads):])
    tcp_packets = sum(f.packets for f in report.flows)
    assert counts["streams"] == counts["tcp"] == tcp_packets
    assert counts["records"] == len(report.flows)
    assert counts["done"] == report.capture.packets == reads[-1]
    assert read[-1][0] == read[-1][1] == (GOLDEN / capture).stat().st_size


def test_a_log_gets_one_line_per_phase():
    log = io.StringIO()
    shown = PhaseProgress(200_000_000, log)
    report = analyze_file(GOLDEN / "loss-vxlan.pcap", chunk_bytes=4096, progress=shown.read, phase=shown.phase)
    shown.stop()
    lines = log.getvalue().splitlines()
    assert lines[0] == "vnetdiag pcap: reading (200 MB)"
    assert lines[1].startswith("vnetdiag pcap: grouping ") and lines[1].endswith(" TCP packets into streams")
    assert lines[2].startswith("vnetdiag pcap: analysing ")
    assert lines[3] == f"vnetdiag pcap: building records of {len(report.flows):,} TCP streams"
    assert lines[4].startswith(f"vnetdiag pcap: analysed {report.capture.packets:,} packets in ")
    assert len(lines) == 5


def test_thousands_of_unknown_block_types_make_one_short_warning():
    """A damaged pcapng (the golden two-interface capture with 3,000 blocks of
    distinct unknown types inserted) gives one warning line, not 50 KB."""
    import struct

    ng = (GOLDEN / "two-ifaces.pcapng").read_bytes()
    shb_len = struct.unpack_from("<I", ng, 4)[0]
    junk = b"".join(struct.pack("<II", 0x0BAD0000 + i, 12) + struct.pack("<I", 12) for i in range(3000))
    junk += struct.pack("<II", 0x0BAD0001, 12) + struct.pack("<I", 12)  # one type twice: named first
    rep = analyze_file(ng[:shb_len] + junk + ng[shb_len:])
    good = analyze_file(ng)
    assert rep.conversations == good.conversations
    (warning,) = [w for w in rep.capture.warnings if "unknown type" in w]
    assert len(warning) < 200
    assert warning.startswith("skipped pcapng blocks of unknown type: 0x0bad0001 x2, 0x0bad0000 x1")
    assert warning.endswith(", 2995 more types (2995 blocks)")
