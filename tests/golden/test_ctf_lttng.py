"""LTTng kernel traces (CTF) in: vnetdiag's reader and analyses against babeltrace2's own output.

The trace is a real LTTng 2.5 kernel trace from the Trace Compass test traces
(../shared/data/lttng/bug446190, EPL-2.0, see its NOTICE); it is not copied
into the repository, so these tests skip when it is absent. Every expected
number is counted here from what the `babeltrace2` CLI prints, in the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / ".." / "shared" / "data" / "lttng" / "bug446190"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))

pytestmark = [
    pytest.mark.skipif(not (TRACE / "metadata").is_file(),
                       reason=f"LTTng test trace not found at {TRACE} (Trace Compass test trace bug446190)"),
    pytest.mark.skipif(shutil.which("babeltrace2") is None, reason="babeltrace2 CLI not installed (apt-get install "
                                                                   "babeltrace2)"),
]

bt2 = pytest.importorskip("bt2", reason="babeltrace2 Python bindings missing (apt-get install python3-bt2)")

from vnetdiag.collect import ctf
from vnetdiag.model import events as ev

_LINE = re.compile(r"^\[(\d+)\] \(\+[\d?]+\) \S+ (\w+): \{ cpu_id = (\d+) \}(?:, \{ ?(.*?) ?\})?$")
_FIELD = re.compile(r'(\w+) = ("[^"]*"|[^,]+)')


def _babeltrace_events() -> list[tuple[int, str, int, dict[str, str]]]:
    """(cycles, event name, cpu, fields) of every event, as babeltrace2 prints them (clock: 1 GHz, so cycles = ns)."""
    text = subprocess.run(["babeltrace2", "--clock-cycles", str(TRACE)], capture_output=True, text=True,
                          check=True, timeout=120).stdout
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        assert m, line
        fields = {k: v.strip().strip('"') for k, v in _FIELD.findall(m[4] or "")}
        out.append((int(m[1]), m[2], int(m[3]), fields))
    return out


@pytest.fixture(scope="module")
def bt_events():
    events = _babeltrace_events()
    assert len(events) == 31_556  # the trace's NOTICE: 31,556 events
    return events


@pytest.fixture(scope="module")
def read():
    trace = ctf.CtfTrace(TRACE)
    records = [e for batch in trace.batches() for e in batch]
    return trace, records


@pytest.fixture(scope="module")
def analysis():
    trace = ctf.CtfTrace(TRACE)
    return trace, ctf.analyze_ctf(trace)


def _per_device(bt_events, *names: str) -> Counter:
    return Counter(f.get("name") or f.get("dev_name") for _, n, _, f in bt_events if n in names)


def test_per_device_counts_equal_babeltrace(bt_events, read):
    trace, _ = read
    rx = _per_device(bt_events, "netif_receive_skb", "net_if_receive_skb")
    assert rx == {"eth0": 326}  # sanity: what babeltrace2 2.0.4 prints (NOTICE)
    for names in (("netif_receive_skb",), ("net_dev_queue",), ("net_dev_xmit",), ("napi_poll",),
                  ("lttng_statedump_network_interface",)):
        want = _per_device(bt_events, *names)
        got = Counter({dev: n for (name, dev), n in trace.counts.items() if name in names})
        assert got == want and sum(want.values()) > 0, names
    for name in ("skb_kfree", "skb_consume", "skb_copy_datagram_iovec"):
        want = sum(1 for _, n, _, _ in bt_events if n == name)
        assert trace.counts[(name, "")] == want > 0, name


def test_records_equal_babeltrace_fields(bt_events, read):
    """Every mapped record has the time, CPU and fields babeltrace2 printed for that event."""
    _, records = read
    kinds = {ev.ReceiveEvent: "netif_receive_skb", ev.QueueEvent: "net_dev_queue", ev.XmitEvent: "net_dev_xmit",
             ev.DropEvent: "skb_kfree", ev.ConsumeEvent: "skb_consume", ev.DeliverEvent: "skb_copy_datagram_iovec",
             ev.NapiPollEvent: "napi_poll"}
    want = []
    for ts, name, cpu, f in bt_events:
        if name in ("netif_receive_skb", "net_dev_queue"):
            want.append((ts, name, cpu, int(f["skbaddr"]), f["name"], int(f["len"])))
        elif name == "net_dev_xmit":
            want.append((ts, name, cpu, int(f["skbaddr"]), f["name"], int(f["len"]), int(f["rc"])))
        elif name == "skb_kfree":
            want.append((ts, name, cpu, int(f["skbaddr"]), f"{int(f['location']):#x}", int(f["protocol"])))
        elif name == "skb_consume":
            want.append((ts, name, cpu, int(f["skbaddr"])))
        elif name == "skb_copy_datagram_iovec":
            want.append((ts, name, cpu, int(f["skbaddr"]), int(f["len"])))
        elif name == "napi_poll":
            want.append((ts, name, cpu, int(f["napi"]), f["dev_name"]))
    got = []
    for e in records:
        name = kinds[type(e)]
        if isinstance(e, (ev.ReceiveEvent, ev.QueueEvent)):
            got.append((e.ts_ns, name, e.cpu, e.skbaddr, e.device, e.len_bytes))
        elif isinstance(e, ev.XmitEvent):
            got.append((e.ts_ns, name, e.cpu, e.skbaddr, e.device, e.len_bytes, e.rc))
        elif isinstance(e, ev.DropEvent):
            assert e.reason == ctf.NO_REASON  # LTTng 2.5's skb_kfree has no reason field
            got.append((e.ts_ns, name, e.cpu, e.skbaddr, e.location, e.protocol))
        elif isinstance(e, ev.ConsumeEvent):
            got.append((e.ts_ns, name, e.cpu, e.skbaddr))
        elif isinstance(e, ev.DeliverEvent):
            got.append((e.ts_ns, name, e.cpu, e.skbaddr, e.len_bytes))
        else:
            got.append((e.ts_ns, name, e.cpu, e.napi, e.device))
    assert sorted(got) == sorted(want) and len(got) == 1021
    assert [g[0] for g in got] == sorted(g[0] for g in got)  # time order, as the path join needs


def test_analyses_on_the_lttng_trace(bt_events, analysis):
    trace, result = analysis
    duration_ns = bt_events[-1][0] - bt_events[0][0]
    assert result.duration_s == pytest.approx(duration_ns / 1e9) and 5.9 < result.duration_s < 6.1
    assert result.completeness.complete and result.completeness.events_read == 1021
    assert set(result.completeness.missing_events) == set(ctf.FDB_NAMES)  # this LTTng had no bridge events
    (eth0,) = [d for d in result.devices if d.device == "eth0"]
    # The statedump lists the initial namespace's devices: eth0 is placed there ('').
    assert eth0.netns == ""
    rx = [f for _, n, _, f in bt_events if n == "netif_receive_skb"]
    tx = [f for _, n, _, f in bt_events if n == "net_dev_xmit"]
    assert round(eth0.rx_packets_per_s * result.duration_s) == len(rx) == 326
    assert round(eth0.rx_bytes_per_s * result.duration_s) == sum(int(f["len"]) for f in rx)
    assert round(eth0.tx_packets_per_s * result.duration_s) == len(tx)
    assert round(eth0.tx_bytes_per_s * result.duration_s) == sum(int(f["len"]) for f in tx)

    # Drops: every skb_kfree, grouped by location, on the device its skb was last seen on.
    frees = Counter(f"{int(f['location']):#x}" for _, n, _, f in bt_events if n == "skb_kfree")
    got = Counter()
    for d in result.drops:
        got[d.location] += d.count
        assert d.reason == ctf.NO_REASON
    assert got == frees
    last_dev: dict[str, str] = {}
    on_eth0 = 0
    for _, n, _, f in bt_events:  # the skb join, done independently on babeltrace2's text
        if n in ("netif_receive_skb", "net_dev_queue", "net_dev_xmit"):
            last_dev[f["skbaddr"]] = f["name"]
        elif n in ("skb_consume", "skb_copy_datagram_iovec"):
            last_dev.pop(f["skbaddr"], None)
        elif n == "skb_kfree":
            on_eth0 += last_dev.pop(f["skbaddr"], None) == "eth0"
    assert sum(d.count for d in result.drops if d.device == "eth0" and d.netns == "") == on_eth0 > 0
    notes = " ".join(trace.notes())
    assert "no network namespace" in notes and "no drop reason" in notes and "symbol table" in notes


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([VNETDIAG, *args], capture_output=True, text=True, timeout=120, env=env,
                          check=False)


def test_trace_report_cli_on_the_directory(bt_events):
    import json

    out = _cli("trace", "report", "--json", str(TRACE))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "vnetdiag.trace-report/1" and doc["recording"]["format"] == "ctf"
    assert doc["recording"]["tracer"] == "lttng-modules 2.5.0"
    assert doc["recording"]["events"]["netif_receive_skb@eth0"] == len(
        [1 for _, n, _, _ in bt_events if n == "netif_receive_skb"])
    assert any("namespace" in n for n in doc["recording"]["notes"])
    assert sum(d["count"] for d in doc["drops"]) == sum(1 for _, n, _, _ in bt_events if n == "skb_kfree")
    text = _cli("trace", "report", str(TRACE))
    assert text.returncode == 0 and "lttng-modules 2.5.0" in text.stdout and "note:" in text.stdout


@pytest.mark.parametrize("damage", ["truncated-stream", "garbage-metadata", "no-metadata"])
def test_damaged_or_foreign_directory_is_one_line_exit_2(tmp_path, damage):
    d = tmp_path / damage
    d.mkdir()
    if damage == "truncated-stream":
        (d / "metadata").write_bytes((TRACE / "metadata").read_bytes())
        (d / "channel0_0").write_bytes((TRACE / "channel0_0").read_bytes()[:5000])
    elif damage == "garbage-metadata":
        (d / "metadata").write_text("this is not CTF metadata\n")
    else:
        (d / "notes.txt").write_text("a directory without a trace\n")
    out = _cli("trace", "report", str(d))
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert str(d) in out.stderr


def test_missing_bt2_is_exit_3_with_the_apt_hint(tmp_path):
    import os

    shadow = tmp_path / "bt2"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('bt2 hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _cli("trace", "report", str(TRACE), env=env)
    assert out.returncode == 3 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "apt-get install python3-bt2" in out.stderr
