"""The CLI's tables on the real lab, piped with COLUMNS=80 and 120: every MAC,
address, namespace and device name whole (compared with iproute2's own view)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def _cli(args: list[str], width: int) -> str:
    """The command's stdout, piped, at COLUMNS=width (ignored with --wide)."""
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", *args], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": str(width)}, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert "…" not in r.stdout
    for line in r.stdout.splitlines() if "--wide" not in args else ():
        if line[:1] in " │┃┏┗┡└─":  # table lines (prose is the terminal's to wrap)
            assert len(line) <= width, line
    return r.stdout


def _links(ns: str) -> list[dict]:
    out = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("width", [80, 120])
def test_inventory_keeps_names_and_macs_whole(lab, width):
    ns = lab.netns("hv1")
    text = _cli(["inventory", "--netns", ns], width)
    tokens = set(text.split())
    assert ns in tokens
    for link in _links(ns):
        assert link["ifname"] in tokens, link["ifname"]
    before = {link["ifname"]: link["address"] for link in _links(ns)}
    wide = _cli(["--wide", "inventory", "--netns", ns], width)
    after = {link["ifname"]: link["address"] for link in _links(ns)}
    assert "not shown" not in wide
    for name, mac in after.items():
        # A MAC that changed while the command ran (a bridge takes its lowest
        # port's) is the lab's doing, not the table's.
        if before.get(name) == mac:
            assert mac in set(wide.split()), (name, mac, [r for r in wide.splitlines() if f" {name} " in r])


@pytest.mark.parametrize("width", [80, 120])
def test_lab_status_and_path_keep_addresses_namespaces_and_devices(lab, width):
    status = _cli(["lab", "status", "--prefix", lab.prefix], width)
    tokens = set(status.split())
    for node in ("vm1", "vm2", "vm3"):
        assert f"{lab.ip(node)}/24" in tokens and lab.netns(node) in tokens
    lab.run("vm1", ["ping", "-c", "1", "-W", "2", lab.ip("vm3")])  # the FDBs learn the path
    path = _cli(["path", lab.netns("vm1"), lab.netns("vm3")], width)
    words = set(path.split())
    for ns in (lab.netns("vm1"), lab.netns("hv1"), lab.netns("hv2"), lab.netns("vm3")):
        assert ns in words, ns
    for dev in ("vm1-p", "vx0", "ul0", "vm3-p"):
        assert dev in words, dev


@pytest.mark.parametrize("width", [80, 120])
def test_counters_keep_every_counter_row_whole(lab, width):
    from vnetdiag.collect import Collector
    from vnetdiag.report import counters

    ns = lab.netns("hv1")
    with Collector(only=lambda n: n.name == ns, driver_stats=False) as col:
        rows = counters.snapshot_rows(col.snapshot(), all_counters=True)
    text = _cli(["counters", "--netns", ns, "--all"], width)  # after: what was non-zero still is
    # Gauges may fall back to zero (and leave the table) between the two reads.
    names = {name for _ns, _dev, name, _v in rows
             if " " not in name and name not in ("count", "entries") and "backlog" not in name}
    tokens = set(text.split())
    assert ns in tokens and names and names <= tokens
