"""The lab: real network namespaces with faults injected at known places.

    from vnetdiag.lab import up, down, attach
    lab = up()                                   # the built-in topology
    lab.run("vm1", ["ping", "-c1", lab.ip("vm3")])
    f = lab.add_fault("loss", at="hv1:vm1-p", percent=5)
    lab.clear_fault(f.id)
    down(lab.prefix)

The lab's description and active faults live in ``<state>/labs/<prefix>/``;
every kernel change is journaled (system/undo.py) so ``down`` always restores.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from vnetdiag.errors import BadInputError, NotFoundError, UsageError
from vnetdiag.lab import builder, spec as spec_mod
from vnetdiag.lab.faults import BY_KIND, FAULTS, Target, resolve_options
from vnetdiag.model.lab import FaultRecord, LabSpec
from vnetdiag.system.privileges import require_root
from vnetdiag.system.state import journals_dir, labs_dir
from vnetdiag.system.undo import Journal

__all__ = ["Lab", "up", "down", "attach", "list_labs", "default_prefix", "FAULTS"]

STATE_SCHEMA = "vnetdiag.lab/1"


def default_prefix() -> str:
    return os.environ.get("VNETDIAG_LAB_PREFIX", "vnd")


def _lab_dir(prefix: str) -> Path:
    return labs_dir() / prefix


def _lab_journal(prefix: str) -> Journal:
    return Journal(f"lab-{prefix}", persistent=True)


def _background_journal(prefix: str) -> Journal:
    return Journal(f"lab-{prefix}-background", persistent=True)


def _fault_journal(prefix: str, fault_id: str) -> Journal:
    return Journal(f"lab-{prefix}-fault-{fault_id}", persistent=True)


def _spec_to_data(spec: LabSpec) -> dict:
    """The TOML-shaped dict that ``spec.parse`` reads back into the same spec."""
    def ep(e) -> dict:
        return {k: v for k, v in dataclasses.asdict(e).items() if v is not None}

    return {
        "prefix": spec.prefix,
        "nodes": {n.name: {"role": n.role, "bridges": list(n.bridges), "firewall": n.firewall,
                           **({"kind": "vm", "memory_mb": n.memory_mb, "serve": n.serve} if n.kind == "vm" else {}),
                           **({"routes": [{"to": to, "via": via} for to, via in n.routes]} if n.routes else {})}
                  for n in spec.nodes},
        "veth": [{"a": ep(v.a), "b": ep(v.b)} for v in spec.veths],
        "vxlan": [{**{k: v for k, v in dataclasses.asdict(x).items() if v is not None},
                   "remotes": list(x.remotes)} for x in spec.vxlans],
        "macvtap": [{"node": m.node, "name": m.name, "lower": m.lower, "mode": m.mode, "guest": ep(m.guest)}
                    for m in spec.macvtaps],
        "tap": [{**{k: v for k, v in dataclasses.asdict(t).items() if v is not None}, "guest": ep(t.guest)}
                for t in spec.taps],
    }


class Lab:
    """A lab that is up: its spec, its namespaces, its backends and faults."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.dir = _lab_dir(prefix)
        state = self._read()
        self.spec: LabSpec = spec_mod.parse(state["spec"], state.get("source", "<state>"))
        self.backends: list[dict] = state.get("backends", [])
        self.vms: list[dict] = state.get("vms", [])
        """QEMU guests: node, pid, start_ticks, accel, boot_s, qmp/serial/console paths, nics."""

    # -- state file ---------------------------------------------------------
    def _read(self) -> dict:
        try:
            return json.loads((self.dir / "state.json").read_text())
        except FileNotFoundError:
            raise NotFoundError(f"no lab {self.prefix!r} is up", hint="vnetdiag lab up") from None

    @contextmanager
    def _locked(self):
        """Serialise fault changes between concurrent commands."""
        with open(self.dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            tmp = self.dir / "state.json.tmp"
            tmp.write_text(json.dumps(state, indent=2))
            os.replace(tmp, self.dir / "state.json")

    # -- names ----------------------------------------------------------------
    def netns(self, node: str) -> str:
        try:
            self.spec.node(node)
        except KeyError:
            raise NotFoundError(f"lab {self.prefix} has no node {node!r}",
                                hint=f"nodes: {', '.join(n.name for n in self.spec.nodes)}") from None
        return builder.netns_name(self.spec, node)

    @property
    def guests(self) -> tuple[str, ...]:
        return self.spec.guests

    def ip(self, node: str) -> str:
        """The first IPv4 address of a node (guests have one), without prefix length."""
        for ep in self.spec.endpoints():
            if ep.node == node and ep.address and ":" not in ep.address:
                return ep.address.split("/")[0]
        raise NotFoundError(f"lab node {node!r} has no address")

    def devices(self) -> list[tuple[str, str]]:
        """(node, device) for every interface the lab made, bridges included."""
        out = [(n.name, b) for n in self.spec.nodes for b in n.bridges]
        return out + [(ep.node, ep.name) for ep in self.spec.endpoints() if not self.spec.is_vm(ep.node)]

    def run(self, node: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
            **kw) -> subprocess.CompletedProcess:
        """Run a command inside a node's namespace."""
        if any(n.name == node and n.kind == "vm" for n in self.spec.nodes):
            raise UsageError(f"lab node {node} is a VM: there is no namespace to run commands in",
                             hint=f"reach it over the network, e.g. ping {self.ip(node)} from another node")
        from vnetdiag.lab import shell

        result = subprocess.run(shell.argv_in(self.netns(node), argv), capture_output=True, text=True,
                                timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    # -- faults ---------------------------------------------------------------
    def target(self, at: str) -> Target:
        node, _, device = at.rpartition(":")
        if not node:
            names = {n.name for n in self.spec.nodes}
            if at in names:
                node, device = at, ""
            else:
                owners = [n for n, d in self.devices() if d == at]
                if len(owners) != 1:
                    where = f"in nodes {', '.join(owners)}" if owners else "in no node"
                    raise BadInputError(f"device {at!r} is {where}", hint="name it as NODE:DEVICE, e.g. hv1:vm1-p")
                node, device = owners[0], at
        if device and (node, device) not in self.devices():
            raise NotFoundError(f"lab {self.prefix} has no device {node}:{device}",
                                hint="vnetdiag lab status lists the devices")
        self.netns(node)
        masters = {(ep.node, ep.name): ep.master for ep in self.spec.endpoints()}
        for x in self.spec.vxlans:
            masters[(x.node, x.name)] = x.master
        macvtaps = {(m.node, m.name) for m in self.spec.macvtaps}
        backend = next((b for b in self.backends if b["macvtap"] == f"{node}:{device}"), None)
        return Target(spec=self.spec, node=node, device=device, netns=self.netns(node),
                      is_bridge_port=bool(masters.get((node, device))),
                      is_macvtap=(node, device) in macvtaps, backend=backend,
                      vm=next((v for v in self.vms if v["node"] == node), None))

    def add_fault(self, kind: str, at: str, **options) -> FaultRecord:
        require_root("lab fault add")
        if kind not in BY_KIND:
            raise UsageError(f"no fault kind {kind!r}", hint=f"kinds: {', '.join(BY_KIND)}")
        fault_cls = BY_KIND[kind]
        opts = resolve_options(fault_cls, options)
        target = self.target(at)
        fault = fault_cls()
        if not target.device and not fault_cls.whole_node:
            raise BadInputError(f"fault {kind} needs a device, not the whole node {target.node}",
                                hint="name it as NODE:DEVICE, e.g. hv1:vm1-p")
        fault.check(target, opts)
        with self._locked() as state:
            faults = state.setdefault("faults", [])
            n = state.get("next_fault", 1)
            state["next_fault"] = n + 1
            record = FaultRecord(id=f"f{n}", kind=kind, node=target.node, device=target.device,
                                 options=opts, created_s=time.time())
            journal = _fault_journal(self.prefix, record.id).open()
            faults.append(dataclasses.asdict(record))
            try:
                fault.inject(target, opts, journal)
            except BaseException:
                journal.undo()
                faults.pop()
                raise
        return record

    # -- background traffic -------------------------------------------------
    def start_background(self) -> list[int]:
        """Other tenants' traffic and IPv6 multicast on every guest link (lab/background.py);
        journaled, so stop_background(), lab down or cleanup stops it."""
        from vnetdiag.lab import background

        self.stop_background()
        journal = _background_journal(self.prefix).open()
        try:
            return background.start(self, journal)
        except BaseException:
            journal.undo()
            raise

    def stop_background(self) -> list[str]:
        """Stop the background senders; returns what could not be undone."""
        j = _background_journal(self.prefix)
        return j.undo() if j.path.exists() else []

    def faults(self) -> list[FaultRecord]:
        return [FaultRecord(**f) for f in self._read().get("faults", [])]

    def clear_fault(self, fault_id: str) -> FaultRecord:
        with self._locked() as state:
            faults = state.get("faults", [])
            match = [f for f in faults if f["id"] == fault_id]
            if not match:
                raise NotFoundError(f"lab {self.prefix} has no active fault {fault_id!r}",
                                    hint="vnetdiag lab fault list")
            failures = _fault_journal(self.prefix, fault_id).undo()
            if failures:
                raise BadInputError(f"clearing fault {fault_id} left: {'; '.join(failures)}")
            state["faults"] = [f for f in faults if f["id"] != fault_id]
        return FaultRecord(**match[0])

    def clear_faults(self) -> list[FaultRecord]:
        return [self.clear_fault(f.id) for f in reversed(self.faults())]

    # -- view -----------------------------------------------------------------
    def status(self) -> dict:
        """The ``vnetdiag.lab/1`` document: nodes, devices, addresses, faults, backends."""
        from vnetdiag.system.proc import ProcessId, is_alive

        present = set(_named_netns())
        nodes = []
        for n in self.spec.nodes:
            ns = builder.netns_name(self.spec, n.name)
            devices = [{"name": ep.name, "address": ep.address, "master": ep.master, "mtu": ep.mtu}
                       for ep in self.spec.endpoints() if ep.node == n.name]
            devices += [{"name": b, "kind": "bridge"} for b in n.bridges]
            nodes.append({"name": n.name, "role": n.role, "netns": ns, "present": ns in present,
                          "firewall": n.firewall, "devices": devices})
        backends = [{**b, "alive": is_alive(ProcessId(pid=b["pid"], start_ticks=b["start_ticks"]))}
                    for b in self.backends]
        vms = [{**v, "alive": is_alive(ProcessId(pid=v["pid"], start_ticks=v["start_ticks"]))} for v in self.vms]
        for node in nodes:
            if self.spec.is_vm(node["name"]):
                node.update(netns=None, kind="vm", present=any(v["alive"] for v in vms if v["node"] == node["name"]))
        return {"schema": STATE_SCHEMA, "prefix": self.prefix, "source": self.spec.source, "nodes": nodes,
                "vxlans": [dataclasses.asdict(x) for x in self.spec.vxlans],
                "backends": backends, "vms": vms, "faults": [dataclasses.asdict(f) for f in self.faults()]}


def _named_netns() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except FileNotFoundError:
        return []


def attach(prefix: str | None = None) -> Lab:
    return Lab(prefix or default_prefix())


def list_labs() -> list[str]:
    d = labs_dir()
    return sorted(p.name for p in d.iterdir() if (p / "state.json").exists()) if d.is_dir() else []


def up(spec: LabSpec | None = None, *, progress: Callable[[str], None] | None = None) -> Lab:
    """Build a lab (the built-in one by default) and return it."""
    require_root("lab up")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("conntrack", "conntrack")):
        from vnetdiag.lab.shell import need
        need(tool, package)
    spec = spec or spec_mod.default(default_prefix())
    lab_dir = _lab_dir(spec.prefix)
    if (lab_dir / "state.json").exists() or _lab_journal(spec.prefix).path.exists():
        present = [n for n in _named_netns() if n.startswith(spec.prefix + "-")]
        if present and (lab_dir / "state.json").exists():
            raise UsageError(f"lab {spec.prefix!r} is already up ({len(present)} namespaces)",
                             hint=f"vnetdiag lab down{'' if spec.prefix == 'vnd' else ' --prefix ' + spec.prefix} first")
        down(spec.prefix)  # leftovers of a killed run
    clash = [n for n in _named_netns() if n in {builder.netns_name(spec, x.name) for x in spec.nodes}]
    if clash:
        raise UsageError(f"namespace {clash[0]} already exists and is not vnetdiag's",
                         hint="choose another prefix in the topology file (prefix = ...)")
    lab_dir.mkdir(parents=True, exist_ok=True)
    journal = _lab_journal(spec.prefix).open()
    state = {"schema": STATE_SCHEMA, "prefix": spec.prefix, "source": spec.source,
             "spec": _spec_to_data(spec), "backends": [], "vms": [], "faults": [], "building": True}
    (lab_dir / "state.json").write_text(json.dumps(state, indent=2))
    try:
        state["backends"] = builder.build(spec, journal, lab_dir, progress, vms=state["vms"])
    except BaseException:
        down(spec.prefix)
        raise
    state["building"] = False
    (lab_dir / "state.json").write_text(json.dumps(state, indent=2))
    return Lab(spec.prefix)


def down(prefix: str | None = None, *, progress: Callable[[str], None] | None = None) -> list[str]:
    """Undo faults, then the lab; idempotent. Returns what could not be undone."""
    require_root("lab down")
    prefix = prefix or default_prefix()
    say = progress or (lambda _m: None)
    failures: list[str] = []
    jdir = journals_dir()
    fault_journals = sorted(jdir.glob(f"lab-{prefix}-fault-*.jsonl")) if jdir.is_dir() else []
    for path in fault_journals:
        say(f"clearing fault {path.stem.rsplit('-', 1)[-1]}")
        failures += Journal(path.stem, persistent=True).undo()
    background = _background_journal(prefix)
    if background.path.exists():
        say("stopping background traffic")
        failures += background.undo()
    lab_journal = _lab_journal(prefix)
    if lab_journal.path.exists():
        say(f"removing lab {prefix}")
        failures += lab_journal.undo()
    if not failures:
        shutil.rmtree(_lab_dir(prefix), ignore_errors=True)
    return failures
