"""Simulated hosts for fleet tests and benchmarks: namespaces with their own sshd.

    with SimFleet(tmp_path, prefix="hm", hosts=3) as sim:
        sim.inventory          # an Ansible INI inventory of the hosts
        sim.guest(1)           # "hmh1g": the guest namespace on host 1

Each host is a network namespace ``{prefix}hN`` with an sshd listening on its
underlay address, a bridge ``br0`` joining a guest namespace ``{prefix}hNg``
(10.200.0.N) to a vxlan ``vx0`` (VNI 100) that floods to every other host. The
underlay is a chain: host 1 - host 2 - host 3 - ..., each inner host routing
between its two links, so traffic between the guests of host 1 and host 3
crosses host 2's ``eth1`` (from host 1) and ``eth3`` (to host 3).

ssh reaches an sshd through ``ProxyCommand``: a relay that enters the host's
namespace (the coordinator stays where it is, as it would on a jump host).
Host and client keys are made by ssh-keygen in the given directory. Every
namespace and sshd is journaled (``fleetsim-PREFIX``) before it is made.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from pathlib import Path

from vnetdiag.system import nsexec, proc
from vnetdiag.system.undo import DeleteNetns, Journal, KillProcess
from vnetdiag.testing.simbase import Simulated

RELAY = """\
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(None)
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            s.shutdown(socket.SHUT_WR); return
        s.sendall(d)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"""

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {dir}/host_key
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AuthorizedKeysFile {dir}/client_key.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel ERROR
"""


def _ip(*argv: str, netns: str | None = None) -> None:
    nsexec.run(["ip", *argv], netns=f"/run/netns/{netns}" if netns else None)


class SimFleet(Simulated):
    def __init__(self, directory: Path, *, prefix: str = "hm", hosts: int = 3,
                 vnetdiag: str | None = None) -> None:
        self.dir = Path(directory)
        self.prefix = prefix
        self.n = hosts
        self.vnetdiag = vnetdiag or str(Path(sys.executable).with_name("vnetdiag"))
        self.journal = Journal(f"fleetsim-{prefix}", persistent=True)
        self.sshd: dict[int, object] = {}

    # ---- names -----------------------------------------------------------------

    def host(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def guest(self, i: int) -> str:
        return f"{self.prefix}h{i}g"

    def guest_ip(self, i: int) -> str:
        return f"10.200.0.{i}"

    def underlay(self, i: int) -> str:
        """The address host ``i``'s sshd and vxlan use (on its link towards host i-1, or i+1 for host 1)."""
        return f"10.98.{i - 1}{i}.2" if i > 1 else "10.98.12.1"

    def ssh_args(self, i: int) -> str:
        relay = shlex.join(["nsenter", f"--net=/run/netns/{self.host(i)}", sys.executable,
                            str(self.dir / "relay.py"), "%h", "%p"])
        return shlex.join(["-i", str(self.dir / "client_key"), "-o", "StrictHostKeyChecking=no",
                           "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}", "-o", f"ProxyCommand={relay}"])

    def inventory_text(self, *, command: dict[int, str] | None = None) -> str:
        """An Ansible INI inventory: hosts h1..hN as root, scoped to their namespaces."""
        lines = ["[hypervisors]"]
        for i in range(1, self.n + 1):
            cmd = (command or {}).get(i, self.vnetdiag)
            lines.append(f"h{i} ansible_host={self.underlay(i)} ansible_user=root vnetdiag_command={cmd} "
                         f"vnetdiag_netns={self.host(i)},{self.guest(i)} "
                         f"ansible_ssh_common_args={shlex.quote(self.ssh_args(i))}")
        return "\n".join(lines) + "\n"

    @property
    def inventory(self) -> Path:
        return self.dir / "hosts.ini"

    # ---- build -----------------------------------------------------------------

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "relay.py").write_text(RELAY)
        for key in ("host_key", "client_key"):
            if not (self.dir / key).exists():
                nsexec.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)])
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.journal.open()
        for i in range(1, self.n + 1):
            for name in (self.host(i), self.guest(i)):
                self.journal.record(DeleteNetns(name=name))
                _ip("netns", "add", name)
                _ip("link", "set", "lo", "up", netns=name)
        # The underlay chain: hN eth{N+1}... named by the peer's number, so "eth3 on h2" leads to h3.
        for i in range(1, self.n):
            a, b = self.host(i), self.host(i + 1)
            _ip("link", "add", f"eth{i + 1}", "netns", a, "type", "veth", "peer", "name", f"eth{i}", "netns", b)
            net = f"10.98.{i}{i + 1}"
            _ip("addr", "add", f"{net}.1/24", "dev", f"eth{i + 1}", netns=a)
            _ip("addr", "add", f"{net}.2/24", "dev", f"eth{i}", netns=b)
            _ip("link", "set", f"eth{i + 1}", "up", netns=a)
            _ip("link", "set", f"eth{i}", "up", netns=b)
        for i in range(1, self.n + 1):
            h = self.host(i)
            nsexec.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=f"/run/netns/{h}")
            # Routes along the chain: left of me via my left neighbour, right via my right one.
            for j in range(1, self.n):
                net = f"10.98.{j}{j + 1}.0/24"
                if j + 1 < i:
                    _ip("route", "add", net, "via", f"10.98.{i - 1}{i}.1", netns=h)
                elif j > i:
                    _ip("route", "add", net, "via", f"10.98.{i}{i + 1}.2", netns=h)
            _ip("link", "add", "br0", "type", "bridge", netns=h)
            _ip("link", "add", "vx0", "type", "vxlan", "id", "100", "local", self.underlay(i), "dstport", "4789",
                netns=h)
            for j in range(1, self.n + 1):
                if j != i:
                    nsexec.run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst",
                                self.underlay(j)], netns=f"/run/netns/{h}")
            _ip("link", "add", "gw", "netns", h, "type", "veth", "peer", "name", "eth0", "netns", self.guest(i))
            for dev in ("vx0", "gw"):
                _ip("link", "set", dev, "master", "br0", netns=h)
            _ip("link", "set", "gw", "mtu", "1450", netns=h)  # the guests' MTU: vxlan's 1450 end to end
            for dev in ("br0", "vx0", "gw"):
                _ip("link", "set", dev, "up", netns=h)
            g = self.guest(i)
            _ip("link", "set", "eth0", "mtu", "1450", "up", netns=g)
            _ip("addr", "add", f"{self.guest_ip(i)}/24", "dev", "eth0", netns=g)
            self._start_sshd(i)
        self.inventory.write_text(self.inventory_text())

    def _start_sshd(self, i: int) -> None:
        cfg = self.dir / f"sshd_{i}.conf"
        cfg.write_text(SSHD_CONFIG.format(address=self.underlay(i), dir=self.dir))
        p = nsexec.popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], netns=f"/run/netns/{self.host(i)}",
                         stdin=open(os.devnull), stdout=open(self.dir / f"sshd_{i}.log", "w"),
                         stderr=open(self.dir / f"sshd_{i}.err", "w"))
        ticks = None
        deadline = time.monotonic() + 5
        while ticks is None and time.monotonic() < deadline:
            ticks = proc.start_ticks(p.pid)
        self.journal.record(KillProcess(pid=p.pid, start_ticks=ticks or 0))
        self.sshd[i] = p
        self._wait_listening(i, deadline=time.monotonic() + 10)

    def _wait_listening(self, i: int, *, deadline: float) -> None:
        from vnetdiag.system.netns import entered

        while True:
            with entered(f"/run/netns/{self.host(i)}"):
                s = socket.socket()
                try:
                    s.settimeout(0.5)
                    s.connect((self.underlay(i), 22))
                    return
                except OSError:
                    if time.monotonic() > deadline or self.sshd[i].poll() is not None:
                        err = (self.dir / f"sshd_{i}.err").read_text()
                        raise RuntimeError(f"sshd on {self.host(i)} did not listen: {err}") from None
                finally:
                    s.close()
            time.sleep(0.05)

    def down(self) -> None:
        for p in self.sshd.values():
            p.terminate()
            try:
                p.wait(timeout=5)
            except Exception:  # noqa: BLE001
                p.kill()
        self.sshd.clear()
        self.journal.undo()
