"""Traffic helpers for lab tests: pings and TCP connections between nodes."""

from __future__ import annotations

import json
import re
import subprocess

_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(lab, src: str, dst: str, *, count: int = 3, interval_s: float = 0.02, size: int = 56,
         dont_fragment: bool = False, wait_s: float = 1.0) -> tuple[int, int]:
    """(sent, received) for pings from node src to node dst."""
    argv = ["ping", "-c", str(count), "-i", str(interval_s), "-W", str(wait_s), "-s", str(size), "-q"]
    if dont_fragment:
        argv += ["-M", "do"]
    out = lab.run(src, [*argv, lab.ip(dst)], check=False, timeout=count * interval_s + wait_s + 10).stdout
    m = _LOSS.search(out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


SERVER = ("import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
          "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen(64);print('ready',flush=True)\n"
          "while True:\n c,_=s.accept();c.sendall(c.recv(64));c.close()")
CLIENT = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]));"
          "s.sendall(b'ping');print(s.recv(64).decode())")


class TcpEcho:
    """A one-line echo server in a lab node, for TCP reachability checks."""

    def __init__(self, lab, node: str, port: int = 7007) -> None:
        self.lab, self.node, self.port = lab, node, port
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.netns(node), "python3", "-c", SERVER, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def connect_from(self, src: str, timeout_s: float = 3.0) -> bool:
        r = self.lab.run(src, ["python3", "-c", CLIENT, self.lab.ip(self.node), str(self.port), str(timeout_s)],
                         check=False, timeout=timeout_s + 10)
        return r.returncode == 0 and r.stdout.strip() == "ping"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def link_stats(lab, node: str, dev: str) -> dict:
    """stats64 of a device as `ip -s -j link` reports it: {"rx": {...}, "tx": {...}}."""
    out = lab.run(node, ["ip", "-s", "-j", "link", "show", "dev", dev]).stdout
    return json.loads(out)[0]["stats64"]


def qdisc(lab, node: str, dev: str) -> dict:
    """The root qdisc of a device as `tc -s -j qdisc` reports it."""
    out = lab.run(node, ["tc", "-s", "-j", "qdisc", "show", "dev", dev]).stdout
    return next(q for q in json.loads(out) if q.get("root"))


def conntrack_stats(lab, node: str) -> dict[str, int]:
    """`conntrack -S` summed over CPUs."""
    out = lab.run(node, ["conntrack", "-S"]).stdout
    total: dict[str, int] = {}
    for key, value in re.findall(r"(\w+)=(\d+)", out):
        total[key] = total.get(key, 0) + int(value)
    return total


def iptables_drops(lab, node: str, table: str, chain: str) -> int:
    """Packets counted by the DROP rules of a chain."""
    out = lab.run(node, ["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"]).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if " DROP " in f" {line} ")
