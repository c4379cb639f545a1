"""A test bed built with plain commands (ip, tc, iptables, nft, sysctl, bridge),
not vnetdiag's lab: what a user's host looks like to vnetdiag.

Every change is journaled before it is made (``vnetdiag.system.undo.Journal``,
owned by this process), so ``Bed.teardown`` (or ``vnetdiag cleanup`` after a
SIGKILL) removes the namespaces, the links that leave with them, and the
background processes, even when a build step failed half-way.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from vnetdiag.system import nsexec, proc
from vnetdiag.system.undo import DeleteNetns, Journal, KillProcess


@dataclass
class Node:
    """One namespace of the bed: named (/run/netns/NAME) or held by a process."""

    name: str
    path: str
    pid: int | None = None

    @property
    def inode(self) -> int:
        return os.stat(self.path).st_ino

    @property
    def ref(self) -> str:
        """How diagnose is told about it: the name, or pid:PID for an unnamed one."""
        return f"pid:{self.pid}" if self.pid is not None else self.name


@dataclass
class Bed:
    prefix: str
    probe_port: int
    """The port diagnose's server is told to listen on: what the meter counts."""
    journal: Journal = field(init=False)
    nodes: dict[str, Node] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.journal = Journal(f"{self.prefix}-{os.getpid()}").open()

    # -- namespaces ---------------------------------------------------------
    def netns(self, short: str) -> Node:
        """A named namespace ``<prefix>-<short>`` with lo up (IPv6 stays enabled)."""
        name = f"{self.prefix}-{short}"
        self.journal.record(DeleteNetns(name=name))
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        nsexec.run(["ip", "netns", "add", name])
        node = self.nodes[short] = Node(name=name, path=f"/run/netns/{name}")
        self.sh(short, "ip link set lo up")
        return node

    def container(self, short: str) -> Node:
        """An unnamed namespace held by a process, as a container runtime makes one."""
        # Gated: the process waits for a line before it can outlive us unjournaled.
        p = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", "read _; exec sleep 3600"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        ticks = _wait_ticks(p.pid)
        self.journal.record(KillProcess(pid=p.pid, start_ticks=ticks))
        self.procs.append(p)
        # unshare has switched namespaces once its netns differs from ours.
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            if time.monotonic() > deadline:
                raise RuntimeError("unshare --net did not enter a new namespace")
            time.sleep(0.005)
        p.stdin.write("go\n")
        p.stdin.flush()
        node = self.nodes[short] = Node(name=f"{self.prefix}-{short}", path=f"/proc/{p.pid}/ns/net", pid=p.pid)
        self.sh(short, "ip link set lo up")
        return node

    # -- commands -----------------------------------------------------------
    def run(self, short: str | None, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        return nsexec.run(argv, netns=self.nodes[short].path if short else None, check=check)

    def sh(self, short: str | None, *commands: str) -> None:
        """Plain commands, one per string, as a user types them (split on spaces)."""
        for c in commands:
            self.run(short, c.split())

    def veth(self, a: str, a_dev: str, b: str, b_dev: str, *, mtu: int | None = None) -> None:
        """A veth pair between namespaces a and b (created in a, moved into b)."""
        self.sh(a, f"ip link add {a_dev} type veth peer name {b_dev}")
        target = self.nodes[b]
        self.sh(a, f"ip link set {b_dev} netns {target.pid if target.pid is not None else target.name}")
        for ns, dev in ((a, a_dev), (b, b_dev)):
            if mtu:
                self.sh(ns, f"ip link set {dev} mtu {mtu}")
            self.sh(ns, f"ip link set {dev} up")

    def sysctl(self, short: str, key: str, value: str | int) -> None:
        self.run(short, ["sysctl", "-qw", f"{key}={value}"])

    def background(self, short: str, argv: list[str]) -> subprocess.Popen:
        """A process of the bed's background traffic (killed at teardown)."""
        p = nsexec.popen(argv, netns=self.nodes[short].path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        ticks = _wait_ticks(p.pid)
        # Recorded right after spawn (the pid is not known before): the window is
        # one syscall, and the namespace's deletion stops its traffic anyway.
        self.journal.record(KillProcess(pid=p.pid, start_ticks=ticks))
        self.procs.append(p)
        return p

    def ping(self, src: str, address: str, *, interval_s: float = 0.05, size: int = 56) -> None:
        self.background(src, ["ping", "-q", "-i", str(interval_s), "-s", str(size), address])

    def udp_flood(self, server: str, client: str, address: str, *, port: int, rate: str = "300K") -> None:
        """Low-rate UDP from iperf3 (another tenant's stream)."""
        self.background(server, ["iperf3", "-s", "-p", str(port)])
        wait_until(lambda: f":{port:04X} " in self.run(server, ["cat", "/proc/net/tcp6"]).stdout
                   or f":{port:04X} " in self.run(server, ["cat", "/proc/net/tcp"]).stdout, "iperf3 listening")
        self.background(client, ["iperf3", "-c", address, "-p", str(port), "-u", "-b", rate, "-t", "120",
                                 "-l", "600"])

    def tenants(self, *, ping: tuple[str, str], flood: tuple[str, str, str, int], multicast: str) -> None:
        """Other tenants on an L2 segment: a fast ping (src, address), a UDP stream
        (server, client, address, port), and IPv6 echo to all nodes from a guest."""
        self.wait_reachable(*ping)
        self.ping(*ping, interval_s=0.02)
        server, client, address, port = flood
        self.udp_flood(server, client, address, port=port)
        self.background(multicast, ["ping", "-6", "-q", "-i", "0.3", "ff02::1%eth0"])

    def wait_reachable(self, src: str, address: str, timeout_s: float = 8.0) -> None:
        """Neighbours resolved and routes working before the window starts."""
        wait_until(lambda: self.run(src, ["ping", "-c", "1", "-W", "0.3", address], check=False).returncode == 0,
                   f"{address} reachable from {src}", timeout_s)

    # -- reading the kernel -------------------------------------------------
    def json(self, short: str | None, argv: list[str]):
        return json.loads(self.run(short, argv).stdout or "[]")

    def teardown(self) -> list[str]:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        return self.journal.undo()


def _wait_ticks(pid: int) -> int:
    deadline = time.monotonic() + 5
    while (t := proc.start_ticks(pid)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not start")
        time.sleep(0.002)
    return t


def wait_until(cond, what: str, timeout_s: float = 8.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
