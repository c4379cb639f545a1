"""vnetdiag recordings out as CTF: record a real trace, export it, read it back with babeltrace2.

The recording is made with `vnetdiag trace record` while two namespaces of
this test ping each other; the export must hold exactly the events the
recording decodes to (counted per event and per device from what the
`babeltrace2` CLI prints), and vnetdiag's analyses must give the same answer
on the CTF trace as on the recording.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vnetdiag.system import tracefs

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("babeltrace2") is None,
                                 reason="babeltrace2 CLI not installed (apt-get install babeltrace2)")]
pytest.importorskip("bt2", reason="babeltrace2 Python bindings missing (apt-get install python3-bt2)")

T = f"c{os.getpid() % 10000:04d}"  # device name tag, unique per run: traces name devices, not namespaces
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


def _spec(prefix: str) -> dict:
    return {"prefix": prefix,
            "nodes": {"a": {"role": "guest"}, "b": {"role": "guest"}},
            "veth": [{"a": {"node": "a", "name": f"{T}a", "address": "198.51.100.1/24"},
                      "b": {"node": "b", "name": f"{T}b", "address": "198.51.100.2/24"}}]}


def _tracing_on(inst: Path) -> bool:
    try:
        return (inst / "tracing_on").read_text().strip() == "1"
    except FileNotFoundError:  # no instance yet, or the kernel is still populating it (ci25)
        return False


def _record_while_pinging(lab, out: Path, env: dict) -> dict:
    p = subprocess.Popen([VNETDIAG, "trace", "record", "--json", "-o", str(out), "--duration", "3", "--events",
                          "all", "--netns", f"{lab.prefix}-*",
                          # tracefs events only: what CTF carries (the eBPF tracer's drops are another chunk)
                          "--backend", "tracefs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        inst = tracefs.TRACEFS_ROOT / "instances" / f"vnetdiag-{p.pid}"
        end = time.monotonic() + 15
        while not _tracing_on(inst):
            assert time.monotonic() < end and p.poll() is None, "tracer did not start"
            time.sleep(0.02)
        lab.run("a", ["ping", "-c5", "-i0.2", "-W1", "198.51.100.2"], check=True, timeout=10)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    return json.loads(stdout)


_LINE = re.compile(r"^\[[^\]]+\] \([^)]+\) (\w+): \{ cpu_id = (\d+) \}, \{ ?(.*?) ?\}$")


def _babeltrace_counts(ctf_dir: Path) -> tuple[Counter, Counter]:
    """Events per name and per (name, device) as the babeltrace2 CLI prints them."""
    out = subprocess.run(["babeltrace2", str(ctf_dir)], capture_output=True, text=True, timeout=120, check=True)
    names, per_dev = Counter(), Counter()
    for line in out.stdout.splitlines():
        m = _LINE.match(line)
        assert m, line
        names[m[1]] += 1
        dev = re.search(r'\b(?:name|dev_name|dev) = "([^"]*)"', m[3])
        if dev and m[1] != "vnetdiag_netdev":
            per_dev[(m[1], dev[1])] += 1
    return names, per_dev


def _discarded(ctf_dir: Path) -> list[int]:
    """Discarded-event counts babeltrace2 warns about, one per stream that lost events."""
    err = subprocess.run(["babeltrace2", str(ctf_dir)], capture_output=True, text=True, timeout=120, check=True).stderr
    return [int(n) for n in re.findall(r"discarded (\d+) events", err)]


def _recording_counts(path: Path) -> tuple[Counter, Counter]:
    """The same counts from the recording itself, decoded by the tracefs decoder."""
    from vnetdiag.collect import tracedecode as td
    from vnetdiag.collect import tracefile
    from vnetdiag.report.ctf_writer import event_name

    rec = tracefile.read(path)
    dec = td.RecordDecoder(rec.formats, rec.layout, rec.symbolize)
    names, per_dev = Counter(), Counter()
    for cpu, page in rec.pages:
        for e in dec.decode_page(cpu, page):
            names[event_name(e)] += 1
            if getattr(e, "device", None) is not None:
                per_dev[(event_name(e), e.device)] += 1
    names["vnetdiag_netdev"] = sum(len(r) for r in rec.devmap.values())
    names["lttng_statedump_start"] = names["lttng_statedump_end"] = 1
    return names, per_dev


def test_recording_exported_as_ctf_reads_back_with_the_same_counts(lab_factory, tmp_path):
    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "vnt") + "x"
    lab = lab_factory(_spec(prefix))
    env = {**os.environ, "VNETDIAG_STATE_DIR": str(tmp_path / "state"),
            # Not this run's lab prefix: cleanup in this empty state would sweep its lab as lost.
            "VNETDIAG_LAB_PREFIX": f"x{os.getpid() % 1000000}"}
    rec_path = tmp_path / "ping.vtr"
    rec_doc = _record_while_pinging(lab, rec_path, env)
    assert rec_doc["events_read"] > 0

    ctf_dir = tmp_path / "ctf"
    out = subprocess.run([VNETDIAG, "trace", "export", "--json", str(rec_path), "--ctf", str(ctf_dir)],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "vnetdiag.trace-export/1" and (ctf_dir / "metadata").is_file()

    bt_names, bt_dev = _babeltrace_counts(ctf_dir)
    rec_names, rec_dev = _recording_counts(rec_path)
    assert bt_names == rec_names == Counter(doc["events"])
    assert bt_dev == rec_dev
    # The pings themselves: 5 echo requests received on b's end, 5 replies on a's (ARP may add more),
    # unless the kernel lost events (other jobs' traffic is traced too; then the export carries the loss).
    if rec_doc["events_lost"] == 0:
        assert bt_dev[("net_if_receive_skb", f"{T}b")] >= 5 and bt_dev[("net_if_receive_skb", f"{T}a")] >= 5
        assert bt_dev[("net_dev_xmit", f"{T}a")] >= 5
    else:
        assert sum(_discarded(ctf_dir)) == rec_doc["events_lost"]

    # The analyses read the CTF trace back to the same answer as the recording.
    def report(target: Path) -> dict:
        r = subprocess.run([VNETDIAG, "trace", "report", "--json", str(target)], capture_output=True, text=True,
                           timeout=120, env=env, check=False)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    a, b = report(rec_path), report(ctf_dir)
    assert b["recording"]["format"] == "ctf" and b["duration_s"] == a["duration_s"]
    assert (b["events_read"], b["events_lost"], b["missing_events"]) == (
        a["events_read"], a["events_lost"], a["missing_events"])
    assert b["drops"] == a["drops"] and b["paths"] == a["paths"] and b["fdb_moves"] == a["fdb_moves"]
    def per_device(d: dict) -> list[tuple]:  # packets and bytes (the documents give rates over the same window)
        return [(x["device"], x["netns"], *(round(x[k] * d["duration_s"]) for k in (
            "rx_packets_per_s", "rx_bytes_per_s", "tx_packets_per_s", "tx_bytes_per_s")), x["gro_frames"])
            for x in d["devices"]]

    assert per_device(b) == per_device(a) and per_device(a)
    ping_b = [x for x in b["devices"] if x["device"] == f"{T}b"]
    assert ping_b and ping_b[0]["netns"] == lab.netns("b")  # placed by the exported device map

