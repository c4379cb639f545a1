"""Tables at 80 and 120 columns never cut what identifies a thing (recorded lab rows,
golden captures through the real CLI), and drop or wrap the rest."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from vnetdiag.report import inventory
from vnetdiag.report.tables import Col, fitted

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"
PCAP = HERE / "pcap"


def _render(renderable, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, emoji=False).print(renderable)
    return buf.getvalue()


def _fits(text: str, width: int) -> None:
    """No cell cut, and no table line wider than the width (prose lines are the terminal's to wrap)."""
    assert "…" not in text
    too_long = [line for line in text.splitlines() if len(line) > width and line[:1] in " │┃┏┗┡└─"]
    assert not too_long, too_long


@pytest.mark.parametrize("width", [80, 120])
def test_inventory_keeps_every_mac_namespace_and_device_whole(width):
    rows = json.loads((TABLES / "inventory.json").read_text())
    text = _render(inventory.table(rows, title="inventory"), width)
    _fits(text, width)
    lines = text.splitlines()
    # Each interface is one line that carries its name and link whole.
    body = [line for line in lines if any(f" {r['name']} " in f" {line} " for r in rows)]
    for r in rows:
        for key in ("name", "link", "master"):
            if r[key]:
                assert any(r[key] in line.split() for line in body), (key, r[key])
    shown_mac = "mac" in lines[2] or any("mac" in line for line in lines[:4])
    if shown_mac:
        for r in rows:
            assert r["mac"] in text, r["mac"]
    for ns in {r["namespace"] for r in rows}:
        assert ns in text.split()


def test_inventory_at_80_names_what_it_left_out_and_wide_shows_it():
    rows = json.loads((TABLES / "inventory.json").read_text())
    narrow = _render(inventory.table(rows, title="inventory"), 80)
    caption = " ".join(narrow.split()).split("not shown at 80 columns:")[1]
    assert "offloads" in caption and "(--wide shows them)" in caption
    wide = _render(inventory.table(rows, title="inventory"), 1000)
    assert "not shown" not in wide and "offloads" in wide and "rxq/txq" in wide
    mac = rows[1]["mac"]
    assert mac in wide


@pytest.mark.parametrize("width", [80, 120])
def test_counter_rows_whole(width):
    rows = json.loads((TABLES / "counters.json").read_text())
    cols = (Col(header="namespace", key=True), Col(header="device", key=True), Col(header="counter", key=True),
            Col(header="value", justify="right", key=True))
    text = _render(fitted(cols, [(ns, dev, name, str(v)) for ns, dev, name, v in rows]), width)
    _fits(text, width)
    for ns, dev, name, v in rows:
        assert any(name in line.split() and str(v) in line.split() for line in text.splitlines()), (ns, dev, name)


def test_free_text_wraps_between_words_and_numbers_are_never_split():
    hops = json.loads((TABLES / "path.json").read_text())["paths"][0]["hops"]
    cols = (Col(header="#", justify="right", key=True), Col(header="namespace", key=True),
            Col(header="device", key=True), Col(header="why"))
    text = _render(fitted(cols, [(str(k), h["netns_name"], h["name"], h["how"]) for k, h in enumerate(hops, 1)]),
                   60)
    _fits(text, 60)
    words = " ".join(text.split())
    for h in hops:
        for word in h["how"].split():  # addresses and MACs inside the text stay whole
            assert word in words, word


def _cli(args, width: int) -> str:
    env = {**os.environ, "COLUMNS": str(width)}
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", *args], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("capture", ["ipv6-loss.pcap", "loss-vxlan.pcap", "conntrack-full.pcap"])
def test_pcap_cli_piped_honours_columns_and_keeps_addresses(width, capture):
    from vnetdiag.capture import analyze_file

    text = _cli(["pcap", str(PCAP / capture), "--retrans", "--flows"], width)
    _fits(text, width)
    report = analyze_file(PCAP / capture)
    tokens = set(text.split())
    for c in report.conversations[:20]:
        assert c.a in tokens and c.b in tokens, (c.a, c.b)
    for r in report.retransmissions:
        assert r.flow in text, r.flow


def test_pipe_without_columns_keeps_rows_on_one_line():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "pcap", str(PCAP / "ipv6-loss.pcap")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert "not shown" not in r.stdout and "start s" in r.stdout


def test_wide_ignores_columns():
    text = _cli(["--wide", "pcap", str(PCAP / "ipv6-loss.pcap")], 80)
    assert "not shown" not in text and max(len(line) for line in text.splitlines()) > 80


@pytest.mark.parametrize("width", [80, 120])
def test_trace_report_of_a_recording_keeps_devices_and_namespaces(width):
    from vnetdiag.collect import tracefile
    from vnetdiag.collect.tracewindow import analyze_recording

    rec = HERE / "tracing" / "recording.vtr"
    text = _cli(["trace", "report", str(rec)], width)
    _fits(text, width)
    result = analyze_recording(tracefile.read(rec))
    tokens = set(text.split())
    for d in result.devices:
        assert d.device in tokens and d.netns in tokens, (d.device, d.netns)
    for d in result.drops:
        assert d.reason in tokens and d.location in tokens


@pytest.mark.parametrize(("env", "terminal", "wide", "width"), [
    ({}, False, False, 250), ({"COLUMNS": "80"}, False, False, 80), ({"COLUMNS": "80"}, True, False, 80),
    ({}, True, False, None), ({"COLUMNS": "80"}, False, True, 1000), ({"COLUMNS": "junk"}, False, False, 250)])
def test_output_width(env, terminal, wide, width):
    from vnetdiag.cli.output import output_width

    assert output_width(is_terminal=terminal, wide=wide, environ=env) == width


def test_the_cli_console_prints_a_mac_with_an_emoji_code_as_it_is():
    """A macvtap got 9a:44:13:ab:65:40 from the kernel in a CI run; rich's emoji codes
    made its ":ab:" an emoji, so a table that must keep MACs whole lost one at random."""
    from vnetdiag.cli.output import Output

    rows = json.loads((TABLES / "inventory.json").read_text())
    rows[0] = dict(rows[0], mac="9a:44:13:ab:65:40")
    buf = io.StringIO()
    out = Output(json_mode=False, wide=True, stream=buf)
    out.console.print(inventory.table(rows, title="inventory"))
    assert "9a:44:13:ab:65:40" in buf.getvalue().split()
