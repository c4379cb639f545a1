"""Real QEMU guests in the lab: one VM on a tap on a bridge, one on a macvtap
(tests/integration/vm_lab.toml). Reachability from a namespace guest,
discovery of both VMs and their NICs, a paused QEMU filling the macvtap ring
(FULL_RING), and nothing left after ``lab up`` is killed while VMs boot.

The VMs boot under TCG here (nested KVM hangs), ~5-15 s each, in parallel:
the session fixture boots them once. Skipped with the reason where QEMU or the
guest image cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from labtraffic import ping

pytestmark = pytest.mark.root

TOPOLOGY = Path(__file__).parent / "vm_lab.toml"
VNETDIAG = str(Path(sys.executable).parent / "vnetdiag")


def _prefix(suffix: str) -> str:
    return (os.environ.get("VNETDIAG_LAB_PREFIX", "vnt") + suffix)[:8]


def _spec_data(prefix: str) -> dict:
    data = tomllib.loads(TOPOLOGY.read_text())
    data["prefix"] = prefix
    return data


def _need_qemu() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: builds namespaces and starts QEMU")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86, or ./setup.sh --test)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: taps cannot be made")
    from vnetdiag.errors import VnetdiagError
    from vnetdiag.lab import guest_image

    try:
        guest_image.ensure()
    except VnetdiagError as exc:
        pytest.skip(f"no guest image: {exc}")


@pytest.fixture(scope="session")
def vmlab():
    _need_qemu()
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    prefix = _prefix("vm")
    lab_mod.down(prefix)
    the_lab = lab_mod.up(spec.parse(_spec_data(prefix), "<test_vm>"))
    try:
        yield the_lab
    finally:
        failures = lab_mod.down(prefix)
        assert not failures, f"lab teardown left: {failures}"


@pytest.fixture
def lab(vmlab):
    vmlab.clear_faults()
    yield vmlab
    vmlab.clear_faults()


def _echo(lab, node: str, dst: str, payload: bytes = b"vnetdiag\n", timeout_s: float = 5.0) -> bytes:
    """What the guest's TCP echo (port 7) sends back, connecting from ``node``."""
    code = ("import socket,sys;s=socket.create_connection((sys.argv[1],7),timeout=float(sys.argv[2]));"
            "s.sendall(sys.argv[3].encode());s.shutdown(socket.SHUT_WR);out=b''\n"
            "while True:\n d=s.recv(4096)\n if not d: break\n out+=d\nsys.stdout.write(out.decode())")
    return lab.run(node, ["python3", "-c", code, dst, str(timeout_s), payload.decode()],
                   timeout=timeout_s + 5).stdout.encode()


def _rx(lab, node: str, dev: str) -> dict:
    out = lab.run(node, ["ip", "-j", "-s", "link", "show", dev]).stdout
    return json.loads(out)[0]["stats64"]["rx"]


def test_both_vms_booted_and_answer_icmp_and_tcp(lab):
    vms = {v["node"]: v for v in lab.vms}
    assert set(vms) == {"vm1", "vm2"}
    assert all(v["accel"] in ("kvm", "tcg") and v["boot_s"] > 0 for v in vms.values())
    for vm, host in (("vm1", "hv1:vm1-t0"), ("vm2", "hv1:mvtap0")):
        assert [n["host"] for n in vms[vm]["nics"]] == [host]
        assert ping(lab, "ns1", vm, count=3) == (3, 3), vm
        assert _echo(lab, "ns1", lab.ip(vm), b"hello " + vm.encode()) == b"hello " + vm.encode(), vm
    # The macvtap VM uses the macvtap's own MAC (macvtap only takes frames sent to it).
    mac = json.loads(lab.run("hv1", ["ip", "-j", "link", "show", "mvtap0"]).stdout)[0]["address"]
    assert vms["vm2"]["nics"][0]["mac"] == mac


def test_topology_lists_both_vms_with_their_nics(lab):
    out = subprocess.run([VNETDIAG, "topology", "--json", "--netns", f"{lab.prefix}-*"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    doc = json.loads(out)
    ifaces = {n["id"]: n for n in doc["nodes"] if n["type"] == "interface"}
    found = {n["name"]: n for n in doc["nodes"] if n["type"] == "process" and "vm" in n}
    hv1_inode = os.stat(f"/run/netns/{lab.netns('hv1')}").st_ino
    for v, dev, kind in (("vm1", "vm1-t0", "tap"), ("vm2", "mvtap0", "macvtap")):
        node = found[f"{lab.prefix}-{v}"]
        state = next(x for x in lab.vms if x["node"] == v)
        assert node["pid"] == state["pid"]
        (nic,) = node["vm"]["nics"]
        assert nic["model"] == "virtio-net-pci" and nic["mac"] == state["nics"][0]["mac"] and nic["queues"] == 1
        assert nic["host_kind"] == kind and nic["host_device"] == dev
        held = ifaces[nic["host_id"]]
        assert held["name"] == dev and held["netns_inode"] == hv1_inode
        assert any(e["source"] == node["id"] and e["target"] == nic["host_id"] and e["type"] == "tap-owner"
                   for e in doc["edges"])


def test_server_less_round_trips_to_each_vm(lab):
    from vnetdiag.probe.handshake import run

    ns1 = f"/run/netns/{lab.netns('ns1')}"
    for vm in ("vm1", "vm2"):
        closed = run(lab.ip(vm), pattern="tcp-syn", port=9, count=50, interval_s=0.002, netns=ns1)
        assert closed.answers == {"rst": 50} and closed.timeouts == 0, vm  # SYN -> RST from the guest kernel
        assert closed.latency.count == 50 and closed.syn_retransmits == {"0": 50}
        echo = run(lab.ip(vm), pattern="icmp-echo", count=50, interval_s=0.002, netns=ns1)
        assert echo.answers == {"echo-reply": 50}, vm
        # The open port: slowly, so the guest's single accepting nc keeps up.
        assert run(lab.ip(vm), port=7, count=3, interval_s=0.3, netns=ns1).answers == {"syn-ack": 3}, vm
    nobody = run("198.51.100.99", port=9, count=2, timeout_s=0.3, interval_s=0, netns=ns1)
    assert nobody.answers == {} and nobody.timeouts == 2


def test_probe_to_vnetdiags_own_server_in_the_guest(lab):
    """vm1 (serve = true) runs the probe server from the host's files over
    virtio-9p: tcp-rr and udp-rr from a namespace guest complete, with the
    server's own TCP counters (read in the guest's kernel) in the result."""
    from vnetdiag.probe.client import run_probe

    ns1 = f"/run/netns/{lab.netns('ns1')}"
    assert next(v for v in lab.vms if v["node"] == "vm1")["serve_port"] == 7735
    assert next(v for v in lab.vms if v["node"] == "vm2")["serve_port"] is None
    tcp = run_probe(lab.ip("vm1"), port=7735, pattern="tcp-rr", streams=2, duration_s=0.5, warmup_s=0.1, netns=ns1)
    assert tcp.transactions > 100 and tcp.errors == 0 and tcp.tcp is not None
    # The guest's kernel is another kernel: the server's namespace is its init_net, and its counters
    # came back from it over the probe's protocol.
    assert tcp.tcp.server_netns_inode is not None and tcp.tcp.server_retrans_segs_delta is not None
    udp = run_probe(lab.ip("vm1"), port=7735, pattern="udp-rr", streams=1, duration_s=0.5, warmup_s=0.1, netns=ns1)
    assert udp.transactions > 100 and udp.udp is not None and udp.udp.lost == 0


def test_path_ends_at_each_vms_nic_and_marks_its_inside_not_observable(lab):
    for vm, dev in (("vm1", "vm1-t0"), ("vm2", "mvtap0")):
        assert ping(lab, "ns1", vm, count=1) == (1, 1)  # the bridge has learned the VM's MAC
        out = subprocess.run([VNETDIAG, "path", "--one-way", "--json", lab.netns("ns1"),
                              f"{lab.netns('hv1')}:{lab.ip(vm)}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        (p,) = json.loads(out.stdout)["paths"]
        assert p["complete"], p["stopped"]
        *before, last = p["hops"]
        assert before[-1]["name"] == dev
        assert last["kind"] == "vm" and last["name"] == f"{lab.prefix}-{vm}" and "not observable" in last["how"]


def test_paused_qemu_fills_the_macvtap_ring_full_ring_equals_rx_dropped(lab):
    from vnetdiag.collect.tracewindow import trace_window

    assert ping(lab, "ns1", "vm2", count=1) == (1, 1)  # neighbours resolved before the pause
    before = _rx(lab, "hv1", "mvtap0")["dropped"]
    lab.add_fault("vm-pause", at="vm2", queue_len=16)
    qmp = next(v["qmp"] for v in lab.vms if v["node"] == "vm2")
    status = subprocess.run([sys.executable, "-m", "vnetdiag.lab.vm", "--qmp", qmp, "status"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(status)["status"] == "paused"
    with trace_window(events="drops", namespaces=[f"{lab.prefix}-*"]) as w:
        sent, received = ping(lab, "ns1", "vm2", count=60, interval_s=0.005, wait_s=0.2)
    dropped = _rx(lab, "hv1", "mvtap0")["dropped"] - before
    assert received == 0
    assert dropped >= sent - 16 - 2  # the 16-frame ring holds the rest (and an ARP or two)
    got = [d for d in w.result.drops if d.reason == "FULL_RING"]
    assert sum(d.count for d in got) == dropped
    # Last seen on the macvtap's lower device (unicast) or on the macvtap itself
    # (broadcasts such as ARP are cloned to each macvtap first); dropped by tap_handle_frame.
    assert {d.device for d in got} <= {"mvl0", "mvtap0"} and {d.location for d in got} == {"tap_handle_frame"}
    lab.clear_faults()
    assert ping(lab, "ns1", "vm2", count=3, wait_s=2) == (3, 3)  # cont: the guest drains and answers again


def _qemu_pids(name_prefix: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                argv = (p / "cmdline").read_bytes().split(b"\0")
                state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv and argv[0].endswith(b"qemu-system-x86_64") and state != "Z" and any(
                    a.startswith(f"guest={name_prefix}-".encode()) for a in argv):
                out.append(int(p.name))
    return out


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (got := cond()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)
    return got


def test_kill9_of_lab_up_while_vms_boot_then_down_leaves_nothing(vmlab, tmp_path):
    _need_qemu()
    prefix = _prefix("vk")
    topo = tmp_path / "vk.toml"
    text = TOPOLOGY.read_text().replace('prefix = "vndvm"', f'prefix = "{prefix}"')
    assert f'prefix = "{prefix}"' in text
    topo.write_text(text)
    from vnetdiag import lab as lab_mod

    lab_mod.down(prefix)
    up = subprocess.Popen([VNETDIAG, "lab", "up", "--topology", str(topo)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True)
    try:
        # Both QEMUs exist and lab up still waits for their ready lines.
        _wait(lambda: len(_qemu_pids(prefix)) == 2, 60, "two QEMU processes")
        assert up.poll() is None, up.stderr.read().decode()
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert _qemu_pids(prefix), "QEMU should outlive a killed lab up (it has its own session)"
    down = subprocess.run([VNETDIAG, "lab", "down", "--prefix", prefix], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    _wait(lambda: not _qemu_pids(prefix), 10, "QEMU processes to exit")
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in netns if n.startswith(prefix + "-")]
    host_links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                                           check=True).stdout)
    assert not [x["ifname"] for x in host_links if x["ifname"] in ("vm1-t0", "mvtap0")]
    assert not lab_mod._lab_dir(prefix).exists()
    from vnetdiag.system.state import journals_dir

    assert not list(journals_dir().glob(f"lab-{prefix}*.jsonl"))
