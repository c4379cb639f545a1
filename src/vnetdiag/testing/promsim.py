"""Simulated hosts for the Prometheus side of the fleet, and a Prometheus to scrape them.

    with DropHosts(tmp_path, prefix="pf", hosts=3) as sim:   # exporters up and counting
        with sim.traffic(delivered_per_s=400, refused_per_s=20), sim.fault(2, probability=0.5):
            with Prometheus(tmp_path / "prom", targets=sim.targets(), rules=[RULES]) as prom:
                prom.wait(lambda: prom.query("up") ...)

Host ``i`` is two namespaces, ``{prefix}{i}s`` (a sender) and ``{prefix}{i}r``
(the receiver, whose drops count), joined by a veth ``{prefix}{i}v``, and one
``vnetdiag export --drops`` scoped to those two namespaces on its own loopback port:
each exporter is scoped to its host, as on a real fleet where every host runs
its own. Traffic is UDP from each sender: ``delivered_per_s`` to a bound
socket (read, so nothing is dropped), ``refused_per_s`` to a closed port (the
kernel's NO_SOCKET drops every host has). A fault drops a share of the
delivered stream on one host with an iptables ``statistic`` rule
(NETFILTER_DROP), so that host drops more than its peers.

Prometheus is Debian's binary, started on a free loopback port with a config
and a storage directory made here, and stopped and removed on exit; a system
Prometheus service is never touched. Namespaces and processes are journaled
(``promsim-PREFIX``) before they are made.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vnetdiag.system import nsexec, proc
from vnetdiag.system.netns import entered
from vnetdiag.system.undo import DeleteNetns, Journal, KillProcess
from vnetdiag.testing.simbase import Simulated, wait_for

DELIVERED_PORT = 9100
REFUSED_PORT = 9101


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback URLs made here
        return resp.read()


def _journaled_popen(journal: Journal, argv: Sequence[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(list(argv), **kw)
    journal.record(KillProcess(pid=p.pid, start_ticks=wait_for(lambda: proc.start_ticks(p.pid), deadline_s=5,
                                                               what=f"{argv[0]} to start", poll_s=0.01)))
    return p


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class DropHosts(Simulated):
    def __init__(self, directory: Path, *, prefix: str = "pf", hosts: int = 3, drops: bool = True,
                 vnetdiag: str | None = None) -> None:
        self.dir = Path(directory)
        self.prefix = prefix
        self.n = hosts
        self.drops = drops
        self.vnetdiag = vnetdiag or str(Path(sys.executable).with_name("vnetdiag"))
        self.journal = Journal(f"promsim-{prefix}", persistent=True)
        self.ports: dict[int, int] = {}
        self.exporters: dict[int, subprocess.Popen] = {}

    # ---- names -----------------------------------------------------------------

    def name(self, i: int) -> str:
        """Host i's name (the ``host`` label its scrape target carries)."""
        return f"h{i}"

    def sender(self, i: int) -> str:
        return f"{self.prefix}{i}s"

    def receiver(self, i: int) -> str:
        return f"{self.prefix}{i}r"

    def device(self, i: int) -> str:
        """The receiver's end of the veth, where its drops are counted."""
        return f"{self.prefix}{i}v"

    def address(self, i: int) -> str:
        return f"10.{230 + (i - 1) // 250}.{(i - 1) % 250}.2"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}/metrics"

    def targets(self, role: str = "hypervisor") -> list[dict]:
        """Prometheus static_configs: one per host, labelled with its host and role."""
        return [{"targets": [f"127.0.0.1:{self.ports[i]}"], "labels": {"host": self.name(i), "role": role}}
                for i in range(1, self.n + 1)]

    # ---- build -----------------------------------------------------------------

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.journal.open()
        for i in range(1, self.n + 1):
            s, r, dev = self.sender(i), self.receiver(i), self.device(i)
            for name in (s, r):
                self.journal.record(DeleteNetns(name=name))
                nsexec.run(["ip", "netns", "add", name])
                nsexec.run(["ip", "-n", name, "link", "set", "lo", "up"])
            nsexec.run(["ip", "link", "add", f"{dev}s", "netns", s, "type", "veth", "peer", "name", dev, "netns", r])
            net = self.address(i).rsplit(".", 1)[0]
            nsexec.run(["ip", "-n", s, "addr", "add", f"{net}.1/24", "dev", f"{dev}s"])
            nsexec.run(["ip", "-n", r, "addr", "add", f"{net}.2/24", "dev", dev])
            nsexec.run(["ip", "-n", s, "link", "set", f"{dev}s", "up"])
            nsexec.run(["ip", "-n", r, "link", "set", dev, "up"])
        for i in range(1, self.n + 1):
            self._start_exporter(i)
        for i in range(1, self.n + 1):
            self.wait_ready(i)

    def _start_exporter(self, i: int) -> None:
        for _ in range(3):  # a free port can be taken between the pick and the bind: pick again
            self.ports[i] = port = free_port()
            argv = [self.vnetdiag, "export", "--netns", self.sender(i), "--netns", self.receiver(i),
                    "--listen", f"127.0.0.1:{port}"]
            err = self.dir / f"exporter_{i}.err"
            p = _journaled_popen(self.journal, [*argv, *(["--drops"] if self.drops else [])],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err.open("w"))
            self.exporters[i] = p
            wait_for(lambda: p.poll() is not None or "serving" in err.read_text(), deadline_s=30,
                     what=f"exporter {i} to listen")
            if p.poll() is None:
                return
            if "already in use" not in err.read_text():
                break
        raise RuntimeError(f"exporter {i} exited: {err.read_text()}")

    def wait_ready(self, i: int, *, deadline_s: float = 30) -> None:
        """Until exporter ``i`` serves /metrics (with the drop families, under --drops)."""
        marker = b"vnetdiag_kernel_drops_places" if self.drops else b"vnetdiag_"

        def ready() -> bool:
            if self.exporters[i].poll() is not None:
                raise RuntimeError(f"exporter {i} exited: {(self.dir / f'exporter_{i}.err').read_text()}")
            try:
                return marker in _get(self.url(i))
            except OSError:
                return False
        wait_for(ready, deadline_s=deadline_s, what=f"exporter {i} at {self.url(i)}")

    def down(self) -> None:
        for p in self.exporters.values():
            _stop(p)
        self.exporters.clear()
        self.journal.undo()

    # ---- traffic and faults ----------------------------------------------------

    @contextlib.contextmanager
    def traffic(self, *, delivered_per_s: int = 400, refused_per_s: int = 20, tick_s: float = 0.02) -> Iterator[None]:
        """UDP from every sender to its receiver, in a thread, while the block runs."""
        pairs = []
        for i in range(1, self.n + 1):
            with entered(f"/run/netns/{self.receiver(i)}"):
                rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rx.bind((self.address(i), DELIVERED_PORT))
                rx.setblocking(False)
            with entered(f"/run/netns/{self.sender(i)}"):
                tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            pairs.append((i, rx, tx))
        stop = threading.Event()

        def send() -> None:
            # Whole packets per tick, the remainder carried over, so the rates hold at any tick length.
            owed = {"d": 0.0, "r": 0.0}
            while not stop.wait(tick_s):
                owed["d"] += delivered_per_s * tick_s
                owed["r"] += refused_per_s * tick_s
                nd, nr = int(owed["d"]), int(owed["r"])
                owed["d"] -= nd
                owed["r"] -= nr
                for i, rx, tx in pairs:
                    for _ in range(nd):
                        tx.sendto(b"d" * 64, (self.address(i), DELIVERED_PORT))
                    for _ in range(nr):
                        tx.sendto(b"r" * 64, (self.address(i), REFUSED_PORT))
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            rx.recv(2048)

        t = threading.Thread(target=send, name="promsim-traffic", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()
            for _, rx, tx in pairs:
                rx.close()
                tx.close()

    @contextlib.contextmanager
    def fault(self, i: int, *, probability: float = 0.5) -> Iterator[None]:
        """Drop ``probability`` of host ``i``'s delivered stream in its receiver (NETFILTER_DROP)."""
        rule = ["INPUT", "-p", "udp", "--dport", str(DELIVERED_PORT), "-m", "statistic", "--mode", "random",
                "--probability", str(probability), "-j", "DROP"]
        ns = f"/run/netns/{self.receiver(i)}"
        nsexec.run(["iptables", "-A", *rule], netns=ns)  # the namespace goes with its rules: no journal step
        try:
            yield
        finally:
            nsexec.run(["iptables", "-D", *rule], netns=ns, check=False)


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping ``targets`` every ``scrape_interval_s``."""

    def __init__(self, directory: Path, *, targets: list[dict], rules: Sequence[Path] = (),
                 scrape_interval_s: float = 1.0, scrape_self: bool = False, binary: str = "prometheus") -> None:
        self.dir = Path(directory)
        self.targets = targets
        self.rules = [str(r) for r in rules]
        self.interval = scrape_interval_s
        self.scrape_self = scrape_self
        """Also scrape Prometheus' own /metrics (job "self"): a Go exporter to compare with."""
        self.binary = binary
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.journal = Journal(f"promsim-prometheus-{id(self):x}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        interval = f"{int(self.interval * 1000)}ms"
        return {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                           "scrape_timeout": interval},
                "rule_files": self.rules,
                "scrape_configs": [{"job_name": "vnetdiag", "static_configs": self.targets}]
                + ([{"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]}]
                   if self.scrape_self else [])}

    def __enter__(self) -> Prometheus:
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(f"{self.binary} not installed (Debian package prometheus)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "prometheus.yml"
        self.journal.open()
        try:
            for _ in range(3):
                self.port = free_port()
                cfg.write_text(json.dumps(self.config(), indent=1))  # JSON is YAML
                log = self.dir / "prometheus.log"
                self.process = _journaled_popen(
                    self.journal, [self.binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("w"))
                wait_for(self._ready, deadline_s=30, what=f"prometheus at {self.url}")
                if self.process.poll() is None:
                    return self
                if "address already in use" not in log.read_text():
                    break
            raise RuntimeError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
        except BaseException:
            self.__exit__()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            return True  # exited: the caller looks at why
        try:
            return _get(f"{self.url}/-/ready").startswith(b"Prometheus")
        except OSError:
            return False

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            _stop(self.process)
        self.journal.undo()
        shutil.rmtree(self.dir / "data", ignore_errors=True)

    # ---- the HTTP API ----------------------------------------------------------

    def api(self, path: str, **params) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        doc = json.loads(_get(f"{self.url}/api/v1/{path}{query}"))
        if doc.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {doc}")
        return doc["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        return self.api("query", query=promql)["result"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def wait(self, cond: Callable[[], object], *, deadline_s: float = 30, what: str = "condition"):
        return wait_for(cond, deadline_s=deadline_s, what=what, poll_s=0.2)
