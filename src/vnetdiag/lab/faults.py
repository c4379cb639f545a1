"""Faults injected at known places, each undone by ``fault clear``.

Each fault is a small class in ``FAULTS``: its options with defaults, where it
may be placed, and ``inject`` which makes the change after recording its undo in
the fault's own journal. What each produces in the kernel's counters and drop
reasons, as measured on this machine, is in docs/lab.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vnetdiag.errors import BadInputError, KernelError, UsageError
from vnetdiag.lab.shell import argv_in, in_netns, ip
from vnetdiag.model.lab import LabSpec
from vnetdiag.system.undo import Journal, ReleaseSharedSetting, RemovePath, RunCommand, hold_shared_setting

CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where a fault goes: a device in a lab node, and what kind of device it is."""

    spec: LabSpec
    node: str
    device: str
    netns: str
    is_bridge_port: bool
    is_macvtap: bool
    backend: dict | None
    """The backend process serving this macvtap (slow-guest), from the lab state."""
    vm: dict | None = None
    """The QEMU guest that is this node (vm-pause), from the lab state."""


@dataclass(frozen=True, kw_only=True)
class Option:
    name: str
    type: type
    default: Any
    help: str


class Fault:
    kind: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    whole_node: ClassVar[bool] = False
    """Placed on a node (--at NODE) rather than on one of its devices."""

    def check(self, target: Target, opts: dict) -> None:
        """Refuse placements that cannot work, with a hint; default: anywhere."""

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        raise NotImplementedError


def _ipt(target: Target, table: str, chain: str, match: list[str], extra: list[str]) -> list[str]:
    return ["-t", table, chain, *match, *extra]


class Loss(Fault):
    kind = "loss"
    summary = "drop P % of packets at a device at random (iptables statistic match)"
    options = (
        Option(name="percent", type=float, default=5.0, help="share of packets dropped, 0-100"),
        Option(name="direction", type=str, default="in", help="in (as the device receives) or out"),
        Option(name="protocol", type=str, default="all",
               help="only packets of this IP protocol (a name from /etc/protocols: udp, tcp, icmp), or all"),
    )

    def check(self, target: Target, opts: dict) -> None:
        if not 0 < opts["percent"] <= 100:
            raise UsageError(f"loss --percent must be in (0, 100], got {opts['percent']}")
        if opts["direction"] not in ("in", "out"):
            raise UsageError(f"loss --direction must be in or out, got {opts['direction']!r}")
        if opts["protocol"] != "all":
            try:
                socket.getprotobyname(opts["protocol"])
            except OSError:
                raise UsageError(f"loss --protocol: {opts['protocol']!r} is not in /etc/protocols",
                                 hint="use udp, tcp, icmp or all") from None
        if target.is_macvtap:
            raise BadInputError(
                f"{target.node}:{target.device} is a macvtap: no netfilter hook sees its frames",
                hint="place the loss at the bridge port of its lower device (e.g. hv1:mvl0-p), or use slow-guest")

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        dev = target.device
        if opts["direction"] == "in":
            table, chain = "raw", "PREROUTING"
            match = ["-m", "physdev", "--physdev-in", dev] if target.is_bridge_port else ["-i", dev]
        else:
            table, chain = "mangle", "POSTROUTING"
            match = ["-m", "physdev", "--physdev-out", dev] if target.is_bridge_port else ["-o", dev]
        if opts["protocol"] != "all":
            match += ["-p", opts["protocol"]]
        rule = [*match, "-m", "statistic", "--mode", "random", "--probability",
                f"{opts['percent'] / 100:.6f}", "-m", "comment", "--comment", f"vnetdiag-fault-{journal.owner}",
                "-j", "DROP"]
        journal.record(RunCommand(argv=argv_in(target.netns, ["iptables", "-w", "-t", table,
                                        "-D", chain, *rule])))
        in_netns(target.netns, ["iptables", "-w", "-t", table, "-I", chain, *rule])


def _replace_root_qdisc(target: Target, journal: Journal, qdisc: list[str]) -> None:
    # Deleting the root qdisc gives the device back its default (noqueue for
    # veth, pfifo_fast or similar for others): that is the undo.
    journal.record(RunCommand(argv=argv_in(target.netns, ["tc", "qdisc", "del", "dev", target.device, "root"])))
    ip(target.netns, ["tc", "qdisc", "replace", "dev", target.device, "root", *qdisc])


class QueueOverflow(Fault):
    kind = "queue-overflow"
    summary = "a tiny egress queue (tbf) on a device, so bursts overflow it"
    options = (
        Option(name="rate", type=str, default="2mbit", help="tbf rate"),
        Option(name="limit", type=int, default=3000, help="queue limit in bytes"),
        Option(name="burst", type=int, default=1600, help="bucket size in bytes (at least the MTU)"),
    )

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        _replace_root_qdisc(target, journal, ["tbf", "rate", opts["rate"], "burst", str(opts["burst"]),
                                              "limit", str(opts["limit"])])


class TxStall(Fault):
    kind = "tx-stall"
    summary = "a device's egress stops sending: TX counters freeze, the qdisc backlog grows (seed 000)"
    options = (Option(name="limit", type=int, default=131072, help="backlog limit in bytes before drops"),)

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        # tbf at 8 bit/s: the bucket starts full, so the first ~1.5 KB leave;
        # after that nothing does. Packets that fit the bucket pile up in the
        # backlog up to ``limit`` and are dropped beyond it; larger packets are
        # dropped by the qdisc at once. TX counters freeze, as in seed 000.
        _replace_root_qdisc(target, journal, ["tbf", "rate", "8bit", "burst", "1600",
                                              "limit", str(opts["limit"])])


class SlowGuest(Fault):
    kind = "slow-guest"
    summary = "the macvtap backend drains slowly or not at all, so the macvtap queue fills and drops (seed 001)"
    options = (
        Option(name="rate", type=float, default=0.0, help="frames per second the backend still reads (0 stops it)"),
        Option(name="queue_len", type=int, default=16, help="macvtap queue length while slow, in frames (0 keeps it)"),
    )

    def check(self, target: Target, opts: dict) -> None:
        if not target.is_macvtap or target.backend is None:
            raise BadInputError(f"slow-guest goes on a macvtap device with a backend, not {target.node}:{target.device}",
                                hint="use the lab's macvtap, e.g. --at hv1:mvtap0")
        if opts["rate"] < 0 or opts["queue_len"] < 0:
            raise UsageError("slow-guest --rate and --queue-len must not be negative")

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        backend = target.backend
        assert backend is not None
        control = Path(backend["control"])
        journal.record(RunCommand(argv=("sh", "-c", f"echo '{{\"rx_pps\": null}}' > {control} && "
                                        f"kill -HUP {backend['pid']} 2>/dev/null; true")))
        journal.record(RemovePath(path=f"{control}.ack"))
        if opts["queue_len"]:
            qlen = ip(target.netns, ["ip", "-j", "link", "show", "dev", target.device]).stdout
            old = json.loads(qlen)[0].get("txqlen", 500)
            journal.record(RunCommand(argv=argv_in(target.netns, ["ip", "link", "set", "dev", target.device,
                                            "txqueuelen", str(old)])))
            ip(target.netns, ["ip", "link", "set", "dev", target.device, "txqueuelen", str(opts["queue_len"])])
        generation = time.monotonic_ns()
        control.write_text(json.dumps({"rx_pps": opts["rate"], "generation": generation}) + "\n")
        os.kill(backend["pid"], signal.SIGHUP)
        ack = Path(f"{control}.ack")
        deadline = time.monotonic() + 5
        while not (ack.exists() and ack.read_text() == str(generation)):
            if time.monotonic() > deadline:
                raise KernelError(f"the macvtap backend (pid {backend['pid']}) did not take the new rate")
            time.sleep(0.005)


# TEST-NET-3: the phantom connections that fill the table never clash with lab traffic.
_PHANTOM_NET = ipaddress.ip_network("203.0.113.0/24")


class ConntrackFull(Fault):
    kind = "conntrack-full"
    summary = "the firewall's connection table is exhausted (limit lowered, table filled)"
    whole_node = True
    options = (Option(name="max", type=int, default=64, help="nf_conntrack_max while the fault is active"),)

    def check(self, target: Target, opts: dict) -> None:
        if not target.spec.node(target.node).firewall:
            raise BadInputError(f"node {target.node} has no firewall",
                                hint="place conntrack-full on a node with a firewall, e.g. --at hv1:br0")
        if opts["max"] < 1:
            raise UsageError("conntrack-full --max must be at least 1")

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        # nf_conntrack_max is global (read-only inside namespaces); the table's
        # count is per namespace. Lower the limit and fill hv1's table with
        # assured, established entries, which early_drop will not evict: new
        # connections are then refused exactly as in a full cloud firewall.
        # The holder is the journal's absolute path: cleanup run with another
        # state directory still sees that this fault is active. Holding waits
        # for exclusive use: another lab's fault (another test run's) would race.
        holder = str(journal.path.absolute())
        journal.record(ReleaseSharedSetting(path=CONNTRACK_MAX, holder=holder))
        hold_shared_setting(CONNTRACK_MAX, holder)
        journal.record(RunCommand(argv=argv_in(target.netns, ["conntrack", "-D",
                                        "-s", str(_PHANTOM_NET)])))
        Path(CONNTRACK_MAX).write_text(f"{opts['max']}\n")
        # The table starts empty: an entry already there (an earlier flow's CLOSE,
        # 10 s) would expire during the fault and free its slot for a new
        # connection (measured: 17 of 64 slots freed 9 s after a diagnosis).
        # Flows still running (other tenants' pings) take slots back at once and
        # keep them while they run.
        in_netns(target.netns, ["conntrack", "-F"], check=False)
        hosts = list(_PHANTOM_NET.hosts())
        for i in range(opts["max"]):
            in_netns(target.netns, ["conntrack", "-I", "-p", "tcp", "-s", str(hosts[i % len(hosts)]),
                                    "-d", "198.51.100.254", "--sport", str(10000 + i), "--dport", "80",
                                    "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3600"],
                     check=False)  # refused once running flows have taken the rest: the table is full
        count = int(in_netns(target.netns, ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout)
        if count < opts["max"]:
            raise KernelError(f"conntrack-full: the table in {target.node} holds {count} entries, "
                              f"not its limit {opts['max']}",
                              hint="check that conntrack -I works there (conntrack-tools, nf_conntrack_netlink)")


class MtuMismatch(Fault):
    kind = "mtu-mismatch"
    summary = "an MTU on the path smaller than the guests' packets"
    options = (Option(name="mtu", type=int, default=1400, help="MTU to set on the device"),)

    def check(self, target: Target, opts: dict) -> None:
        if not 68 <= opts["mtu"] <= 65535:
            raise UsageError(f"mtu-mismatch --mtu must be 68-65535, got {opts['mtu']}")

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        out = ip(target.netns, ["ip", "-j", "link", "show", "dev", target.device]).stdout
        old = json.loads(out)[0]["mtu"]
        journal.record(RunCommand(argv=argv_in(target.netns, ["ip", "link", "set", "dev", target.device,
                                        "mtu", str(old)])))
        ip(target.netns, ["ip", "link", "set", "dev", target.device, "mtu", str(opts["mtu"])])


class VmPause(Fault):
    kind = "vm-pause"
    summary = ("a QEMU guest paused over QMP (stop): its backend stops reading, the ring of its macvtap or tap "
               "fills (seed 001)")
    options = (Option(name="queue_len", type=int, default=0,
                      help="queue length of the VM's macvtaps and taps while paused, in frames (0 keeps it)"),)
    whole_node = True

    def check(self, target: Target, opts: dict) -> None:
        _need_vm(self.kind, target)
        if opts["queue_len"] < 0:
            raise UsageError("vm-pause --queue-len must not be negative")

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        import sys

        from vnetdiag.lab import vm as vm_mod

        vm = target.vm
        assert vm is not None
        # The undo resumes the guest: a killed run leaves it running, or the
        # lab's journal kills it; either way no VM stays paused by accident.
        journal.record(RunCommand(argv=(sys.executable, "-m", "vnetdiag.lab.vm", "--qmp", vm["qmp"], "cont")))
        if opts["queue_len"]:
            # Both drivers resize their rings to the new txqueuelen (tap_queue_resize, tun_queue_resize).
            for nic in vm["nics"]:
                node, dev = nic["host"].split(":", 1)
                ns = f"{target.spec.prefix}-{node}"
                old = json.loads(ip(ns, ["ip", "-j", "link", "show", "dev", dev]).stdout)[0].get("txqlen", 500)
                journal.record(RunCommand(argv=argv_in(ns, ["ip", "link", "set", "dev", dev, "txqueuelen", str(old)])))
                ip(ns, ["ip", "link", "set", "dev", dev, "txqueuelen", str(opts["queue_len"])])
        vm_mod.qmp_command(vm["qmp"], "stop")
        status = vm_mod.qmp_command(vm["qmp"], "query-status")
        if status.get("running"):
            raise KernelError(f"VM {target.node} still runs after QMP stop (status {status.get('status')})")


class GuestTxStall(Fault):
    kind = "guest-tx-stall"
    summary = ("a QEMU guest's NICs stop sending (a qdisc inside the guest passes nothing): on the host the "
               "tap's RX freezes while traffic to the guest goes on (seed 000)")
    whole_node = True

    def check(self, target: Target, opts: dict) -> None:
        _need_vm(self.kind, target)

    def inject(self, target: Target, opts: dict, journal: Journal) -> None:
        import sys

        from vnetdiag.lab import vm as vm_mod

        vm = target.vm
        assert vm is not None
        for nic in vm["nics"]:
            # Journaled first: a killed run's cleanup asks the guest to resume (a
            # gone VM makes that a no-op); the lab's own journal stops the VM anyway.
            journal.record(RunCommand(argv=(sys.executable, "-m", "vnetdiag.lab.vm", "--serial", vm["serial"],
                                            "--console", vm["console"], "--mac", nic["mac"], "tx-resume")))
            vm_mod.tx_stall(vm, nic["mac"])


def _need_vm(kind: str, target: Target) -> None:
    if target.vm is None:
        raise BadInputError(f"{kind} goes on a VM node (kind = \"vm\"), not {target.node}",
                            hint="vnetdiag lab status lists the VMs")


# The explicit list of fault kinds, in the order docs and --help show them.
FAULTS: tuple[type[Fault], ...] = (Loss, QueueOverflow, TxStall, SlowGuest, ConntrackFull, MtuMismatch, VmPause,
                                   GuestTxStall)
BY_KIND: dict[str, type[Fault]] = {f.kind: f for f in FAULTS}


def resolve_options(fault: type[Fault], given: dict) -> dict:
    """Defaults filled in, unknown options refused, values converted."""
    known = {o.name: o for o in fault.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        allowed = ", ".join(f"--{o.replace('_', '-')}" for o in known) or "none"
        raise UsageError(f"fault {fault.kind} has no option --{unknown[0].replace('_', '-')} (options: {allowed})")
    out = {}
    for name, opt in known.items():
        value = given.get(name, opt.default)
        try:
            out[name] = opt.type(value)
        except (TypeError, ValueError):
            raise UsageError(f"fault {fault.kind} --{name.replace('_', '-')}: {value!r} is not a {opt.type.__name__}") from None
    return out
