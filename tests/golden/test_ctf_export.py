"""CTF export of the recorded golden trace (tests/golden/tracing/recording.vtr), no root needed.

Counts are taken from what the `babeltrace2` CLI prints for the exported
trace and compared with the recording decoded by the tracefs decoder. The
live version (record, export, read back) is tests/integration/test_ctf_export.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("babeltrace2") is None,
                                reason="babeltrace2 CLI not installed (apt-get install babeltrace2)")
pytest.importorskip("bt2", reason="babeltrace2 Python bindings missing (apt-get install python3-bt2)")

from vnetdiag.collect import ctf, tracefile
from vnetdiag.collect import tracedecode as td
from vnetdiag.collect.tracewindow import analyze_recording
from vnetdiag.model.tracing import Completeness
from vnetdiag.report import ctf_writer

REC = Path(__file__).parent / "tracing" / "recording.vtr"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
_LINE = re.compile(r"^\[[^\]]+\] \([^)]+\) (\w+): \{ cpu_id = (\d+) \}, \{ ?(.*?) ?\}$")


def _babeltrace(ctf_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["babeltrace2", str(ctf_dir)], capture_output=True, text=True, timeout=60, check=True)


def test_export_reads_back_in_babeltrace2_with_the_recordings_events(tmp_path):
    rec = tracefile.read(REC)
    summary = ctf_writer.export_recording(rec, tmp_path / "ctf")
    lines = _babeltrace(summary.path).stdout.splitlines()
    got = Counter()
    cpus = Counter()
    for line in lines:
        m = _LINE.match(line)
        assert m, line
        dev = re.search(r'\b(?:name|dev) = "([^"]*)"', m[3])
        got[(m[1], dev[1] if dev and m[1] != ctf.DEVICE_EVENT else "")] += 1
        cpus[int(m[2])] += 1
    dec = td.RecordDecoder(rec.formats, rec.layout, rec.symbolize)
    want = Counter()
    want_cpus = Counter({0: 2 + sum(len(r) for r in rec.devmap.values())})  # statedump start/end + devices
    for cpu, page in rec.pages:
        for e in dec.decode_page(cpu, page):
            want[(ctf_writer.event_name(e), getattr(e, "device", ""))] += 1
            want_cpus[e.cpu] += 1
    want[(ctf.DEVICE_EVENT, "")] = sum(len(r) for r in rec.devmap.values())
    want[("lttng_statedump_start", "")] = want[("lttng_statedump_end", "")] = 1
    assert got == want and len(want) > 5
    assert cpus == want_cpus  # every event in its CPU's stream
    assert sum(summary.events.values()) == len(lines)
    # LTTng's names and fields, with the kernel's reason names and the symbols beside the addresses.
    drop = next(ln for ln in lines if " skb_kfree: " in ln)
    assert re.search(r'reason = \( "NO_SOCKET"', drop) and 'location_symbol = "ping_rcv+' in drop
    assert re.search(r"location = 0x[0-9A-F]+", drop) and "protocol = 2048" in drop  # IPv4, host order as LTTng


@pytest.mark.parametrize("packet_events", [ctf_writer._PACKET_EVENTS, 50])
def test_export_then_report_gives_the_recordings_analysis(tmp_path, monkeypatch, packet_events):
    monkeypatch.setattr(ctf_writer, "_PACKET_EVENTS", packet_events)  # 50: many packets per stream
    rec = tracefile.read(REC)
    ctf_writer.export_recording(rec, tmp_path / "ctf")
    trace = ctf.CtfTrace(tmp_path / "ctf")
    got, want = ctf.analyze_ctf(trace), analyze_recording(rec)
    assert got.drops == want.drops and got.paths == want.paths and got.fdb_moves == want.fdb_moves
    assert got.fdb_events == want.fdb_events and len(want.fdb_events) == 13  # bridge, port, MAC, vid and time
    assert got.completeness == want.completeness and got.duration_s == pytest.approx(want.duration_s)
    assert [(d.device, d.netns, d.gro_frames) for d in got.devices] == [(d.device, d.netns, d.gro_frames)
                                                                         for d in want.devices]
    assert trace.devmap == dict(rec.devmap)
    details = subprocess.run(["babeltrace2", "-c", "sink.text.details", "--params", "with-metadata=false",
                              str(tmp_path / "ctf")], capture_output=True, text=True, timeout=60, check=True).stdout
    packets = details.count("Packet beginning")
    assert packets == 2 if packet_events > 1000 else packets > 10  # one per CPU, or many


def test_lost_events_are_written_as_discarded_events(tmp_path):
    rec = tracefile.read(REC)
    # The golden recording lost nothing; give it a loss count to see it survive the export.
    rec.completeness = Completeness(events_read=rec.completeness.events_read, events_lost=10,
                                    lost_by_cpu={0: 7, 1: 3})
    ctf_writer.export_recording(rec, tmp_path / "ctf")
    warnings = _babeltrace(tmp_path / "ctf").stderr
    assert "discarded 7 events" in warnings and "discarded 3 events" in warnings
    trace = ctf.CtfTrace(tmp_path / "ctf")
    assert ctf.analyze_ctf(trace).completeness == Completeness(
        events_read=rec.completeness.events_read, events_lost=10, lost_by_cpu={0: 7, 1: 3})


def test_export_cli_json_and_refusals(tmp_path):
    out = subprocess.run([VNETDIAG, "trace", "export", "--json", str(REC), "--ctf", str(tmp_path / "new")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # nothing but the document on stdout
    assert doc["schema"] == "vnetdiag.trace-export/1" and doc["streams"] == 2 and doc["events"]["skb_kfree"] == 3
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("not ours\n")
    for argv in ([str(REC), "--ctf", str(busy)], [str(tmp_path / "absent.vtr"), "--ctf", str(tmp_path / "x")]):
        out = subprocess.run([VNETDIAG, "trace", "export", *argv], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 2 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert (busy / "keep.txt").read_text() == "not ours\n"
