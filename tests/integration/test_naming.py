"""Namespaces the way users name them: unnamed namespaces held by processes
(as containers and VM helpers hold them), wired to a named router with veth
ends moved by PID, named by every accepted form in diagnose, path, counters
and probe; the traced drops and the counters of an unnamed namespace meet in
one verdict."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import VNETDIAG  # noqa: F401  (the same binary as the cli fixture)
from vnetdiag.system.nsexec import run

pytestmark = pytest.mark.root
PORT = 7761


def _wait(cond, what: str, timeout_s: float = 10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def unnamed():
    if os.geteuid() != 0:
        pytest.skip("needs root: builds real network namespaces")
    tag = f"nm{os.getpid() % 100000}"
    router = f"{tag}-r"
    holders: list[subprocess.Popen] = []
    subprocess.run(["ip", "netns", "add", router], check=True)
    try:
        for _ in range(2):
            p = subprocess.Popen(["unshare", "--net", "sleep", "600"])
            holders.append(p)
            _wait(lambda p=p: os.stat(f"/proc/{p.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino,
                  "the holder's new namespace")
        client, server = holders
        rpath = f"/run/netns/{router}"
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=rpath)
        for i, (p, name) in enumerate(((client, f"{tag}c"), (server, f"{tag}s")), 1):
            path = f"/proc/{p.pid}/ns/net"
            # Made in the router, the other end moved into the holder's namespace by PID.
            run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}r"], netns=rpath)
            run(["ip", "link", "set", name, "netns", str(p.pid)], netns=rpath)
            run(["ip", "addr", "add", f"10.77.{i}.1/24", "dev", f"{name}r"], netns=rpath)
            run(["ip", "link", "set", f"{name}r", "up"], netns=rpath)
            run(["ip", "link", "set", "lo", "up"], netns=path)
            run(["ip", "addr", "add", f"10.77.{i}.2/24", "dev", name], netns=path)
            run(["ip", "link", "set", name, "up"], netns=path)
            run(["ip", "route", "add", "default", "via", f"10.77.{i}.1"], netns=path)
        run(["ping", "-c1", "-W2", "10.77.2.2"], netns=f"/proc/{client.pid}/ns/net")
        yield {"router": router, "client": client.pid, "server": server.pid, "tag": tag,
               "client_inode": os.stat(f"/proc/{client.pid}/ns/net").st_ino,
               "server_inode": os.stat(f"/proc/{server.pid}/ns/net").st_ino}
    finally:
        for p in holders:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "delete", router], check=False)


def _vnetdiag(*args, timeout=120):
    return subprocess.run([VNETDIAG, *args], capture_output=True, text=True, timeout=timeout)


def test_every_form_names_the_same_unnamed_namespace(unnamed):
    from vnetdiag.naming import namespace

    pid, ino = unnamed["server"], unnamed["server_inode"]
    for form in (f"pid:{pid}", str(pid), f"/proc/{pid}/ns/net", str(ino), f"netns:{ino}", f"pid:{pid} (sleep)"):
        assert namespace(form).inode == ino, form
    assert namespace(unnamed["router"]).name == unnamed["router"]
    assert namespace(f"{unnamed['tag']}-*").name == unnamed["router"]  # a glob that names one


def test_counters_take_pid_and_path_forms(unnamed):
    for form in (f"pid:{unnamed['client']}", f"/proc/{unnamed['client']}/ns/net"):
        out = _vnetdiag("counters", "--netns", form, "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        inodes = {n["inode"] for n in doc["namespaces"]}
        assert inodes == {unnamed["client_inode"]}, (form, inodes)
        assert {i["name"] for i in doc["interfaces"]} >= {f"{unnamed['tag']}c"}


def test_path_between_unnamed_namespaces(unnamed):
    out = _vnetdiag("path", f"pid:{unnamed['client']}", f"netns:{unnamed['server_inode']}:10.77.2.2", "--json")
    assert out.returncode == 0, out.stderr
    there, back = json.loads(out.stdout)["paths"]
    tag = unnamed["tag"]
    assert [h["name"] for h in there["hops"]][:1] == [f"{tag}c"] and there["complete"]
    assert f"{tag}sr" in [h["name"] for h in there["hops"]] and back["complete"]


def test_probe_into_unnamed_namespace_by_pid(unnamed):
    from vnetdiag.probe.server import Server

    srv = Server(bind="10.77.2.2", port=PORT, netns=f"pid:{unnamed['server']}")
    srv.serve_in_thread()
    try:
        out = _vnetdiag("probe", "10.77.2.2", "--port", str(PORT), "--netns", f"/proc/{unnamed['client']}/ns/net",
                        "--duration", "0.3", "--warmup", "0", "--json")
    finally:
        srv.stop()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["transactions"] > 0


def test_a_missing_namespace_is_one_line_with_the_forms(unnamed):
    out = _vnetdiag("counters", "--netns", f"{unnamed['tag']}-rx")
    assert out.returncode == 2
    err = out.stderr.strip()
    assert "\n" not in err and "pid:PID" in err and unnamed["router"] in err  # the closest candidate


def test_trace_and_counters_of_an_unnamed_namespace_meet_in_one_verdict(unnamed):
    spath = f"/proc/{unnamed['server']}/ns/net"
    rule = ["INPUT", "-p", "tcp", "--dport", str(PORT + 1), "-m", "statistic", "--mode", "random",
            "--probability", "0.03", "-j", "DROP"]
    run(["iptables", "-w", "-I", *rule], netns=spath)
    try:
        out = _vnetdiag("diagnose", "--from", f"pid:{unnamed['client']}", "--to", spath,
                        "--streams", "4", "--duration", "2", "--port", str(PORT + 1), "--json", timeout=60)
    finally:
        run(["iptables", "-w", "-D", *rule], netns=spath, check=False)
    assert out.returncode == 1, out.stderr
    top = json.loads(out.stdout)["verdicts"][0]
    assert top["netns_inode"] == unnamed["server_inode"], top
    assert {"trace", "counter"} <= {e["source"] for e in top["evidence"]}, top["evidence"]
    assert top["netns"] == f"pid:{unnamed['server']} (sleep)"
