"""Which firewall rule dropped the probe's packets, as netfilter itself says.

In each namespace that has dropping rules, a temporary table (journaled
before it is made, so ``vnetdiag cleanup`` removes it after a SIGKILL) marks
the probe's packets with ``meta nftrace set 1`` at the first hooks
(prerouting and output, priority -350), and ``nft -a monitor trace`` reports
every verdict they meet. A packet whose trace ends in a drop or reject
verdict names its rule (table, chain, handle, text), whether or not the rule
has a counter, and iptables rules are seen too where iptables is the
nf_tables one (Debian's default). Only tables of the nf_tables kernel API are
traced: rules of iptables-legacy are not.

    with NftTrace(namespaces, flows) as t:   # namespaces: model Namespace records
        run_probe()
    t.result                                 # tuple[RuleTrace, ...]
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vnetdiag.errors import VnetdiagError
from vnetdiag.model.bundle import ProbeFlows
from vnetdiag.model.netfilter import RuleTrace
from vnetdiag.system import netns, nsexec, proc
from vnetdiag.system.undo import Journal, KillProcess, RunCommand

MARK_PORT = 9
"""The discard port: one datagram to 127.0.0.1 in each namespace shows its monitor is listening."""
READY_TIMEOUT_S = 5.0

_LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) (?P<rest>.*)$")
_VERDICT = re.compile(r"\(verdict (?P<verdict>\w+)")
_HANDLE = re.compile(r" # handle (?P<handle>\d+)")
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_DROPPING = ("drop", "reject")


def table_name() -> str:
    return f"vnetdiag_trace_{os.getpid()}"


def ruleset(flows: ProbeFlows, table: str) -> str:
    """The marking table for the probe's packets in both directions (and the readiness mark)."""
    ip = "ip6" if ":" in flows.server else "ip"
    proto = {6: "tcp", 17: "udp"}.get(flows.proto)
    if proto is None:
        raise ValueError(f"netfilter tracing follows TCP and UDP probes, not protocol {flows.proto}")
    fwd = f"{ip} daddr {flows.server} meta l4proto {proto} th dport {flows.server_port}"
    rev = f"{ip} saddr {flows.server} meta l4proto {proto} th sport {flows.server_port}"
    mark = f"ip daddr 127.0.0.1 udp dport {MARK_PORT}"
    chains = "".join(
        f"  chain {name} {{ type filter hook {hook} priority -350; policy accept;\n"
        f"    {fwd} meta nftrace set 1\n    {rev} meta nftrace set 1\n"
        # notrack: the mark never takes a conntrack entry (nor fails on a full table).
        + (f"    {mark} meta nftrace set 1 notrack\n" if hook == "output" else "") + "  }\n"
        for name, hook in (("pre", "prerouting"), ("out", "output")))
    return f"table inet {table} {{\n{chains}}}\n"


@dataclass
class _Monitor:
    ns: object
    proc: object
    ready: threading.Event = field(default_factory=threading.Event)
    open: dict[str, bool] = field(default_factory=dict)
    """Trace id -> towards the server, for the packet each id is tracing now."""
    drops: list[tuple[tuple, bool]] = field(default_factory=list)
    """(rule, towards the server) per dropped packet."""
    overflows: int = 0
    """Times nft said its netlink socket overflowed ("We lost some netlink events")."""


def parse_line(line: str, port: int, mon: _Monitor) -> bool:
    """Fold one ``nft -a monitor trace`` line into ``mon``; True for the readiness mark.

    A trace id is a hash of the skb, and the kernel reuses skbs: an id names
    the packet of its latest "packet:" line, and a packet is dropped once, so
    each dropping verdict is one packet."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return False
    rest, tid = m["rest"], m["id"]
    if rest.startswith("packet:"):
        if f"dport {MARK_PORT} " in rest + " " and "127.0.0.1" in rest:
            return True
        # Another tool's nftrace may mark other packets: only the probe's port counts.
        fwd, rev = (re.search(rf"\b{end} {port}\b", rest) is not None for end in ("dport", "sport"))
        if fwd or rev:
            mon.open[tid] = fwd
        else:
            mon.open.pop(tid, None)
        return False
    if tid not in mon.open:
        return False
    rule = None
    if rest.startswith("rule "):
        v = _VERDICT.search(rest)
        text = rest[len("rule "):]
        if v is not None and (v["verdict"] in _DROPPING or " reject" in f" {text}"):
            h = _HANDLE.search(text)
            text = _COUNTER.sub("counter", text[: h.start()] if h else text[: v.start()]).strip()
            rule = (m["family"], m["table"], m["chain"], text, int(h["handle"]) if h else None)
    elif rest.startswith("policy drop"):
        rule = (m["family"], m["table"], m["chain"], "policy drop", None)
    if rule is not None:
        mon.drops.append((rule, mon.open.pop(tid)))
    return False


def tally(inode: int, drops: list[tuple[tuple, bool]]) -> list[RuleTrace]:
    by_rule: dict[tuple, list[int]] = {}
    for rule, forward in drops:
        by_rule.setdefault(rule, [0, 0])[0 if forward else 1] += 1
    return [RuleTrace(netns_inode=inode, family=k[0], table=k[1], chain=k[2], rule=k[3], handle=k[4],
                      verdict="drop", forward=n[0], reverse=n[1]) for k, n in sorted(by_rule.items(), key=str)]


class NftTrace:
    """Netfilter tracing of the probe's packets in ``namespaces`` for one window."""

    def __init__(self, namespaces: Sequence, flows: ProbeFlows) -> None:
        self.namespaces = list(namespaces)
        self.flows = flows
        self.table = table_name()
        self.result: tuple[RuleTrace, ...] = ()
        self.notes: list[str] = []
        self._journal: Journal | None = None
        self._monitors: list[_Monitor] = []

    def start(self) -> None:
        nsexec.need("nft", "nftables")
        self._journal = Journal(f"nftrace-{os.getpid()}").open()
        try:
            for ns in self.namespaces:
                self._start_one(ns)
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _start_one(self, ns) -> None:
        import subprocess

        p = nsexec.popen(["nft", "-a", "monitor", "trace"], netns=ns, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self._journal.record(KillProcess(pid=p.pid, start_ticks=proc.start_ticks(p.pid) or 0))
        mon = _Monitor(ns=ns, proc=p)
        self._monitors.append(mon)
        threading.Thread(target=self._read, args=(mon,), daemon=True, name="vnetdiag-nftrace").start()
        self._journal.record(RunCommand(argv=tuple(nsexec.argv_in(ns, ["nft", "delete", "table", "inet",
                                                                       self.table]))))
        nsexec.run(["nft", "-f", "-"], netns=ns, input=ruleset(self.flows, self.table))

    def _read(self, mon: _Monitor) -> None:
        for line in mon.proc.stdout:
            if line.startswith("# ERROR") and "lost" in line:
                mon.overflows += 1
            elif parse_line(line, self.flows.server_port, mon):
                mon.ready.set()

    def _wait_ready(self) -> None:
        """Each monitor has subscribed once it reports the mark datagram (sent until it does)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        for mon in self._monitors:
            while not mon.ready.is_set():
                _mark(mon)
                if mon.ready.wait(0.05):
                    break
                if time.monotonic() > deadline or mon.proc.poll() is not None:
                    raise VnetdiagError(f"nft monitor trace in {mon.ns.label} did not start",
                                        hint="check that nft works there: nft list ruleset")

    def stop(self) -> tuple[RuleTrace, ...]:
        # Each monitor drains what the kernel said up to a last mark, then the table goes.
        out: list[RuleTrace] = []
        try:
            for mon in self._monitors:
                _drain(mon)
                nsexec.run(["nft", "delete", "table", "inet", self.table], netns=mon.ns, check=False)
                out += tally(mon.ns.inode, mon.drops)
                if mon.overflows:
                    self.notes.append(f"netfilter tracing in {mon.ns.label} lost events ({mon.overflows} netlink "
                                      "overflows): its counts may be low")
        finally:
            self.close()
        self.result = tuple(out)
        return self.result

    def close(self) -> None:
        for mon in self._monitors:
            if mon.proc.poll() is None:
                mon.proc.kill()
                mon.proc.wait(timeout=5)
        if self._journal is not None:
            self._journal.undo()
            self._journal = None

    def __enter__(self) -> "NftTrace":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _drain(mon: _Monitor) -> None:
    """Let the monitor print what the kernel already sent it: the last mark seen ends it."""
    mon.ready.clear()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not mon.ready.is_set() and time.monotonic() < deadline and mon.proc.poll() is None:
        try:
            _mark(mon)
        except VnetdiagError:
            return  # the namespace is gone, and its monitor with it
        mon.ready.wait(0.05)


def _mark(mon: _Monitor) -> None:
    """One marked datagram to the discard port in the monitor's namespace."""
    with netns.entered(mon.ns.path):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        try:
            s.sendto(b"vnetdiag", ("127.0.0.1", MARK_PORT))
        except OSError:
            pass  # refused on the way out (a full table, a rule): sent again until seen


def connected(interfaces: Iterable, ends: Iterable[int]) -> set[int]:
    """The namespaces joined to ``ends`` by links across namespaces (veth peers,
    a macvlan's lower device): where the probe's packets can go. Another
    tenant's namespaces stay untouched."""
    edges: dict[int, set[int]] = {}
    for i in interfaces:
        if i.link is not None and i.link.netns_inode != i.ref.netns_inode:
            edges.setdefault(i.ref.netns_inode, set()).add(i.link.netns_inode)
            edges.setdefault(i.link.netns_inode, set()).add(i.ref.netns_inode)
    seen, todo = set(ends), list(ends)
    while todo:
        for n in edges.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


_DROPS = re.compile(r"\b(drop|reject)\b")


def dropping_namespaces(namespaces: Iterable, reach: set[int]) -> list:
    """The namespaces (records) in ``reach`` whose nf_tables ruleset can drop:
    a drop or reject verdict or policy, with a counter or not (native nft, and
    iptables on the nf_tables backend, which ``nft list ruleset`` shows too)."""
    out = []
    for ns in namespaces:
        if ns.inode not in reach:
            continue
        r = nsexec.run(["nft", "list", "ruleset"], netns=ns, check=False, timeout_s=10)
        if r.returncode == 0 and _DROPS.search(r.stdout):
            out.append(ns)
    return out
