"""The pcapng writer on recorded eBPF records with packet bytes (tests/golden/pcapng/record.py),
read back by tshark: one interface per (namespace, device, link type), a comment per packet,
headers decoded by Wireshark's own dissectors, nanosecond wall-clock timestamps. No root needed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from vnetdiag.collect.ebpf_drops import EbpfDropSource, parse_head
from vnetdiag.report.pcapng_writer import pcapng_bytes
from vnetdiag.system import bpftrace, tracefs
from vnetdiag.system.kallsyms import Kallsyms

G = Path(__file__).parent / "pcapng"
META = json.loads((G / "meta.json").read_text())
FIELDS = ("frame.interface_id", "frame.interface_name", "frame.comment", "frame.len", "frame.cap_len",
          "frame.time_epoch", "ip.src", "ipv6.src", "udp.dstport", "tcp.dstport", "tcp.flags.syn")


@pytest.fixture(scope="module")
def packets():
    src = EbpfDropSource(filter="udp", head_bytes=128)
    src.reasons = tracefs.parse_format((G / "kfree_skb.format").read_text(), system="skb").symbols("reason")
    src.syms = Kallsyms((G / "kallsyms.txt").read_text())
    for m in map(bpftrace.parse_line, (G / "bpftrace.jsonl").read_text().splitlines()):
        if m is not None:
            src._on_message(m)
    src._parse_pending()
    return src.records


@pytest.fixture(scope="module")
def rows(packets, tmp_path_factory):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    path = tmp_path_factory.mktemp("pcapng") / "drops.pcapng"
    path.write_bytes(pcapng_bytes(packets, wall_offset_ns=META["wall_offset_ns"],
                                  netns_labels={META["netns_inode"]: META["netns"]}))
    argv = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("|"))) for line in out.splitlines()]


def test_every_recorded_drop_carries_its_first_bytes(packets):
    counted = json.loads((G / "counters.json").read_text())
    assert len(packets) == sum(int(n) for n in counted["iptables"] + counted["ip6tables"]) == 7
    assert all(p.head and p.wire_len_bytes >= len(p.head) for p in packets)
    # INPUT drops on lo have an Ethernet header; OUTPUT drops happen before one is built
    assert {p.outer.dport: p.head_from for p in packets} == {9: "mac", 10: "network"}


def test_head_line_words_are_little_endian_and_cut_at_caplen():
    key, frm, data, wire = parse_head("B 7 1 2 10 60 1211100f0e0d0c0b 1a19181716151413\n")
    assert (key, frm, wire) == ((1, 7), "network", 60)
    assert data == bytes(range(0x0B, 0x15))
    assert parse_head("B 7 1 0 0 0 0 0") == ((1, 7), "", b"", 0)
    assert parse_head("D 1 2 3") is None


def test_tshark_reads_every_packet_with_its_comment(rows, packets):
    assert len(rows) == len(packets)
    for r in rows:
        assert "reason=NETFILTER_DROP" in r["frame.comment"]
        assert "location=nft_do_chain+0x" in r["frame.comment"]
        assert f"netns={META['netns']} (netns:{META['netns_inode']})" in r["frame.comment"]
        # OUTPUT drops happen before the route gave the packet a device
        assert r["frame.interface_name"] == ("no device" if r["udp.dstport"] == "10" else "lo")
    ports = sorted((r["udp.dstport"] or "", r["tcp.dstport"] or "") for r in rows)
    assert ports == [("", "9")] + [("10", "")] * 3 + [("9", "")] * 3


def test_one_interface_per_link_type_and_full_lengths(rows):
    # lo (Ethernet header) and the OUTPUT drops (raw IP, no device) are two interfaces
    by_port = {}
    for r in rows:
        by_port.setdefault(r["udp.dstport"] or "tcp" + r["tcp.dstport"], set()).add(r["frame.interface_id"])
    assert by_port["9"] == by_port["tcp9"] and len(by_port["9"]) == 1
    assert by_port["10"].isdisjoint(by_port["9"]) and len(by_port["10"]) == 1
    udp9 = [r for r in rows if r["udp.dstport"] == "9"]
    # 512 bytes of UDP payload + 8 + 20 + 14: the original length survives the 128-byte cut
    assert {(r["frame.len"], r["frame.cap_len"], r["ip.src"]) for r in udp9} == {("554", "128", "127.0.0.1")}
    syn = [r for r in rows if r["tcp.dstport"] == "9"]
    assert syn[0]["ipv6.src"] == "::1" and syn[0]["tcp.flags.syn"] in ("1", "True")


def test_timestamps_are_monotonic_plus_one_offset_in_nanoseconds(rows, packets):
    first = min(p.ts_ns for p in packets) + META["wall_offset_ns"]
    got = min(rows, key=lambda r: r["frame.time_epoch"])["frame.time_epoch"]
    assert got == f"{first // 10**9}.{first % 10**9:09d}"
