"""Tracing analyses and CLI checks that need no root. The device map is the one
recorded from a real lab in tests/golden/tracing/recording.vtr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vnetdiag.analyze.drops import filter_drops
from vnetdiag.analyze.paths import device_sequence, resolve_namespaces
from vnetdiag.collect import tracefile
from vnetdiag.collect.tracing import resolve_events
from vnetdiag.errors import UsageError
from vnetdiag.model.tracing import DropCount, Hop
from vnetdiag.system.kallsyms import Kallsyms

G = Path(__file__).parents[1] / "golden" / "tracing"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


@pytest.fixture(scope="module")
def devmap():
    return tracefile.read(G / "recording.vtr").devmap


def test_unique_names_and_neighbours_place_repeated_names(devmap):
    ns, _ = resolve_namespaces(("eth0", "vm1-p", "br0", "vx0", "ul0", "hv1-p", "br0", "hv2-p", "ul0"), devmap)
    assert ns == ("trc-vm1", "trc-hv1", "trc-hv1", "trc-hv1", "trc-hv1", "trc-fabric", "trc-fabric", "trc-fabric",
                  "trc-hv2")  # eth0 and the last ul0 through their veth peers


def test_a_lone_repeated_name_stays_ambiguous_with_candidates(devmap):
    ns, cands = resolve_namespaces(("eth0",), devmap)
    assert ns == (None,) and cands == (("trc-vm1", "trc-vm2", "trc-vm3"),)
    ns, _ = resolve_namespaces(("no-such-dev", "vm1-p"), devmap)
    assert ns == (None, "trc-hv1")


def test_nested_xmit_is_not_a_new_hop():
    hops = [Hop(device=d, netns=None, kind=k, ts_ns=i) for i, (d, k) in enumerate(
        [("vx0", "queue"), ("ul0", "queue"), ("ul0", "xmit"), ("vx0", "xmit"), ("hv1-p", "rx")])]
    assert device_sequence(hops) == ("vx0", "ul0", "hv1-p")


def test_filter_drops_by_globs():
    drops = (DropCount(netns="a-hv1", device="vm1-p", reason="NETFILTER_DROP", location="nft_do_chain", count=3,
                       rate_per_s=1.0),
             DropCount(netns=None, device="eth0", reason="NO_SOCKET", location="ping_rcv", count=1, rate_per_s=0.1,
                       ambiguous=("a-vm1", "b-vm1")))
    assert [d.device for d in filter_drops(drops, netns="a-*")] == ["vm1-p", "eth0"]
    assert [d.device for d in filter_drops(drops, reason="netfilter*")] == ["vm1-p"]
    assert filter_drops(drops, device="vm9*") == ()


def test_kallsyms_function_offset_from_recorded_lines():
    table = Kallsyms((G / "kallsyms.txt").read_text())
    first = (G / "kallsyms.txt").read_text().split()
    addr, name = int(first[0], 16), first[2]
    assert table.symbolize(addr + 0x10).startswith(f"{name}+0x10/")
    assert table.function(addr) == name
    assert table.symbolize(1) == "0x1"


def test_unknown_event_set_is_a_usage_error():
    with pytest.raises(UsageError):
        resolve_events("everything")


@pytest.mark.parametrize("argv", [["drops", "--duration", "0"], ["drops", "--interval", "-1", "--duration", "1"],
                                  ["trace", "record", "-o", "/nonexistent-dir/x.vtr", "--duration", "1"],
                                  ["drops", "--light", "--netns", "vnd-*", "--duration", "1"],
                                  ["trace", "report", "/nonexistent-file.vtr"]])
def test_bad_input_is_one_line_exit_2(argv):
    out = subprocess.run([VNETDIAG, *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "hint" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_without_root_drops_says_so_and_leaves_nothing():
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    if subprocess.run([*nobody, sys.executable, "-c", "import vnetdiag"], capture_output=True).returncode != 0:
        pytest.skip("user nobody cannot run this Python (its installation is not readable)")
    before = set(os.listdir("/sys/kernel/tracing/instances"))
    out = subprocess.run([*nobody, sys.executable, "-m", "vnetdiag.cli.main", "drops", "--duration", "1"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "VNETDIAG_STATE_DIR": "/tmp/vnetdiag-nobody"})
    assert out.returncode == 3 and "root" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert set(os.listdir("/sys/kernel/tracing/instances")) <= before


def test_an_address_reentering_a_device_starts_a_new_life():
    from vnetdiag.analyze.paths import PathTracker, latest_life

    hops = [Hop(device=d, netns=None, kind=k, ts_ns=i) for i, (d, k) in enumerate(
        [("eth0", "queue"), ("vm1-p", "rx"), ("eth0", "queue"), ("vm1-p", "rx")])]
    assert [h.ts_ns for h in latest_life(tuple(hops))] == [2, 3]
    ended = []
    tracker = PathTracker(on_path=ended.append)
    tracker.feed_columns([1, 0, 1, 0], [7, 7, 7, 7], [0, 1, 0, 1], [1, 2, 3, 4], [60, 60, 60, 60],
                         ["eth0", "vm1-p"], {})
    assert [(p.end, [h[0] for h in p.hops]) for p in ended] == [("untraced", ["eth0", "vm1-p"])]
    assert [h[0] for h in tracker.live[7]] == ["eth0", "vm1-p"]


def test_unmounted_tracefs_says_how_to_mount(tmp_path):
    from vnetdiag.errors import MissingFeatureError
    from vnetdiag.system.tracefs import open_tracefs

    with pytest.raises(MissingFeatureError) as exc:
        open_tracefs(tmp_path, mount=False)
    assert f"mount -t tracefs nodev {tmp_path}" in str(exc.value)
