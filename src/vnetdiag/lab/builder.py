"""Build a lab from its spec, recording the undo of every step first.

Everything is created inside the lab's own namespaces, so deleting them removes
links, qdiscs, firewall rules and namespace sysctls at once; what lives outside
(backend processes, device nodes, global sysctls changed by faults) has its own
undo step. The journal is written before each change (see system/undo.py), so a
``lab up`` killed halfway is undone completely by ``lab down``.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from vnetdiag.errors import KernelError
from vnetdiag.lab.shell import in_netns, ip, run, spawn_journaled
from vnetdiag.model.lab import Endpoint, LabSpec, Macvtap
from vnetdiag.probe.server import DEFAULT_PORT
from vnetdiag.system import proc
from vnetdiag.system.undo import DeleteNetns, Journal, RemovePath

# A quiet lab (ipv6 = false): no IPv6 autoconfiguration chatter moving the
# counters that a test compares with ip/tc/nstat.
_QUIET_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


def netns_name(spec: LabSpec, node: str) -> str:
    return f"{spec.prefix}-{node}"


def build(spec: LabSpec, journal: Journal, lab_dir: Path, progress=None, *, vms: list[dict] | None = None) -> list[dict]:
    """Create the lab; return the backend processes started (for the state file).
    QEMU guests (``kind = "vm"`` nodes) are appended to ``vms`` as they start."""
    say = progress or (lambda _msg: None)
    vm_nodes = [n for n in spec.nodes if n.kind == "vm"]
    image = None
    if vm_nodes:
        from vnetdiag.lab import guest_image
        from vnetdiag.system.nsexec import need

        need("qemu-system-x86_64", "qemu-system-x86")
        image = guest_image.ensure(say)  # before any kernel change: the slow part on first use
    say(f"namespaces: {', '.join(netns_name(spec, n.name) for n in spec.nodes if n.kind != 'vm')}")
    for node in spec.nodes:
        if node.kind == "vm":
            continue
        ns = netns_name(spec, node.name)
        journal.record(DeleteNetns(name=ns))
        run(["ip", "netns", "add", ns])
        ip(ns, ["ip", "link", "set", "lo", "up"])
        for key, value in (() if spec.ipv6 else _QUIET_SYSCTLS.items()):
            in_netns(ns, ["sysctl", "-qw", f"{key}={value}"])
        for br in node.bridges:
            ip(ns, ["ip", "link", "add", br, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])
            ip(ns, ["ip", "link", "set", br, "up"])
    say("links: veth pairs, vxlan overlay, macvtap")
    for veth in spec.veths:
        a, b = veth.a, veth.b
        ip(netns_name(spec, a.node), ["ip", "link", "add", a.name, "type", "veth",
             "peer", "name", b.name, "netns", netns_name(spec, b.node)])
    for x in spec.vxlans:
        ns = netns_name(spec, x.node)
        ip(ns, ["ip", "link", "add", x.name, "type", "vxlan", "id", str(x.vni), "local", x.local,
             "dev", x.underlay, "dstport", str(x.dstport)])
        for remote in x.remotes:
            ip(ns, ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", x.name, "dst", remote])
    for m in spec.macvtaps:
        ns = netns_name(spec, m.node)
        ip(ns, ["ip", "link", "add", "link", m.lower, "name", m.name, "type", "macvtap", "mode", m.mode])
        if spec.is_vm(m.guest.node):
            continue  # QEMU takes the macvtap's /dev/tapN and uses its MAC (start_vms)
        ip(netns_name(spec, m.guest.node), ["ip", "tuntap", "add", "dev", m.guest.name, "mode", "tap"])
        # The "VM" must use the macvtap's MAC: macvtap only takes frames sent to it.
        mac = _mac_of(ns, m.name)
        ip(netns_name(spec, m.guest.node), ["ip", "link", "set", m.guest.name, "address", mac])
    # A VM's tap exists while a descriptor holds it: opened here, handed to
    # QEMU, gone with it (and with the namespace).
    tap_fds = {}
    if vm_nodes:
        from vnetdiag.lab import vm as vm_mod

        for t in spec.taps:
            tap_fds[(t.node, t.name)] = vm_mod.open_tap(f"/run/netns/{netns_name(spec, t.node)}", t.name, t.queues)
    for ep in spec.endpoints():
        if not spec.is_vm(ep.node):
            _configure(spec, ep)
    for x in spec.vxlans:
        _configure(spec, Endpoint(node=x.node, name=x.name, master=x.master, mtu=x.mtu))
    for node in spec.nodes:
        if node.firewall:
            _firewall(netns_name(spec, node.name), [x for x in spec.vxlans if x.node == node.name])
        for to, via in node.routes if node.kind != "vm" else ():
            ip(netns_name(spec, node.name), ["ip", "route", "add", to, "via", via])
    backends = []
    for m in spec.macvtaps:
        if spec.is_vm(m.guest.node):
            continue
        say(f"backend for {m.node}:{m.name} -> {m.guest.node}:{m.guest.name}")
        backends.append(start_backend(spec, m, journal, lab_dir))
    booting = start_vms(spec, journal, lab_dir, image, tap_fds, say, vms if vms is not None else []) if vm_nodes else []
    wait_carrier(spec)
    for child, info in booting:
        info["boot_s"] = round(vm_mod.wait_ready(child, info), 2)
        say(f"vm {info['node']}: booted in {info['boot_s']:.1f} s ({info['accel']})")
    return backends


def guest_mac(spec: LabSpec, node: str, nic: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) for a VM NIC on a tap."""
    import hashlib

    h = hashlib.sha256(f"{spec.prefix}/{node}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


def start_vms(spec: LabSpec, journal: Journal, lab_dir: Path, image, tap_fds: dict, say, vms: list[dict]) -> list:
    """Spawn every VM (they boot in parallel); return [(Popen, info)] to wait on."""
    from vnetdiag.lab import vm as vm_mod

    accel, why = vm_mod.choose_accel(image, lab_dir, journal)
    say(f"vms: {accel} ({why})")
    booting = []
    try:
        for node in (n for n in spec.nodes if n.kind == "vm"):
            nics = []
            for t in spec.taps:
                if t.guest.node == node.name:
                    nics.append(vm_mod.Nic(mac=guest_mac(spec, node.name, t.guest.name),
                                           fds=tuple(tap_fds[(t.node, t.name)]),
                                           host=f"{t.node}:{t.name}", host_kind="tap", address=t.guest.address))
            for m in spec.macvtaps:
                if m.guest.node == node.name:
                    chardev = _macvtap_node(spec, m, journal, lab_dir)
                    nics.append(vm_mod.Nic(mac=_mac_of(netns_name(spec, m.node), m.name),
                                           fds=tuple(vm_mod.open_macvtap(str(chardev))),
                                           host=f"{m.node}:{m.name}", host_kind="macvtap", address=m.guest.address))
            say(f"vm {node.name}: QEMU with {len(nics)} virtio-net NIC(s) on {', '.join(n.host for n in nics)}")
            try:
                child, info = vm_mod.start(node.name, nics, image, lab_dir, journal, accel=accel,
                                           memory_mb=node.memory_mb, routes=node.routes,
                                           label=f"{spec.prefix}-{node.name}",
                                           serve_port=DEFAULT_PORT if node.serve else None)
            finally:
                for n in nics:
                    if n.host_kind == "macvtap":
                        for fd in n.fds:
                            os.close(fd)
            info["accel_why"] = why
            vms.append(info)
            booting.append((child, info))
    finally:
        for fds in tap_fds.values():
            for fd in fds:
                os.close(fd)
        tap_fds.clear()
    return booting


def _macvtap_node(spec: LabSpec, m: Macvtap, journal: Journal, lab_dir: Path) -> Path:
    """A device node for the macvtap's /dev/tapN, made in the lab directory
    (the namespace's device has no node in the host's /dev)."""
    _ifindex, major, minor = _chardev(netns_name(spec, m.node), m.name)
    node = lab_dir / f"tap-{m.node}-{m.name}"
    journal.record(RemovePath(path=str(node)))
    node.unlink(missing_ok=True)
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    return node


def wait_carrier(spec: LabSpec, timeout_s: float = 10.0) -> None:
    """Return once every lab interface has carrier (the kernel's linkwatch sets
    it asynchronously, so a ping right after ``ip link set up`` may be lost)."""
    import json

    deadline = time.monotonic() + timeout_s
    pending = {n.name for n in spec.nodes if n.kind != "vm"}
    while pending:
        for node in sorted(pending):
            links = json.loads(ip(netns_name(spec, node), ["ip", "-j", "link", "show"]).stdout)
            if all("LOWER_UP" in link.get("flags", []) for link in links if link["ifname"] != "lo"):
                pending.discard(node)
        if pending and time.monotonic() > deadline:
            raise KernelError(f"lab interfaces in {', '.join(sorted(pending))} did not get carrier "
                              f"within {timeout_s:.0f} s")
        if pending:
            time.sleep(0.02)


def _mac_of(ns: str, dev: str) -> str:
    out = ip(ns, ["ip", "-br", "link", "show", "dev", dev]).stdout.split()
    return out[2]


def _configure(spec: LabSpec, ep: Endpoint) -> None:
    ns = netns_name(spec, ep.node)
    if ep.mtu:
        ip(ns, ["ip", "link", "set", ep.name, "mtu", str(ep.mtu)])
    if ep.master:
        ip(ns, ["ip", "link", "set", ep.name, "master", ep.master])
    if ep.address:
        ip(ns, ["ip", "addr", "add", ep.address, "dev", ep.name])
    ip(ns, ["ip", "link", "set", ep.name, "up"])


# A security group as clouds build it: stateful, conntrack on every forwarded
# packet (bridged ones too, through br_netfilter), invalid packets dropped.
FIREWALL_CHAIN = "VND-SG"


def _firewall(ns: str, tunnels: list) -> None:
    in_netns(ns, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
    # The firewall is the guests' security group: it tracks their connections,
    # not the node's own vxlan tunnel. Tracked, the tunnel would need its own
    # table entries, a new one each time TCP re-hashes a flow (every SYN
    # retransmit picks a new vxlan source port), so a full table would also drop
    # encapsulated packets at the underlay, by chance of timing.
    notrack = [["-t", "raw", "-A", chain, "-p", "udp", "--dport", str(x.dstport), "-j", "CT", "--notrack"]
               for x in tunnels for chain in ("PREROUTING", "OUTPUT")]
    rules = [
        *notrack,
        ["-N", FIREWALL_CHAIN],
        ["-A", "FORWARD", "-j", FIREWALL_CHAIN],
        ["-A", FIREWALL_CHAIN, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
        ["-A", FIREWALL_CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", FIREWALL_CHAIN, "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"],
    ]
    for rule in rules:
        in_netns(ns, ["iptables", "-w", *rule])


def _chardev(ns: str, dev: str) -> tuple[int, int, int]:
    """(ifindex, major, minor) of a macvtap's character device, read from the
    namespace's own /sys (ip netns exec mounts it)."""
    out = in_netns(ns, ["sh", "-c", f"cat /sys/class/net/{dev}/ifindex /sys/class/net/{dev}/macvtap/tap*/dev"])
    ifindex, majmin = out.stdout.split()
    major, minor = majmin.split(":")
    return int(ifindex), int(major), int(minor)


def start_backend(spec: LabSpec, m: Macvtap, journal: Journal, lab_dir: Path) -> dict:
    ns = netns_name(spec, m.node)
    ifindex, major, minor = _chardev(ns, m.name)
    node = lab_dir / f"tap{ifindex}"
    journal.record(RemovePath(path=str(node)))
    if node.exists():
        node.unlink()
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    control = lab_dir / f"backend-{m.name}.json"
    journal.record(RemovePath(path=str(control)))
    control.write_text('{"rx_pps": null}\n')
    ready = lab_dir / f"backend-{m.name}.ready"
    journal.record(RemovePath(path=str(ready)))
    log = lab_dir / f"backend-{m.name}.log"
    # Gated like QEMU: it runs only once the journal names it (ci9 killed `lab up`
    # between a plain spawn and its record, and the backend outlived `lab down`).
    child = spawn_journaled(
        [sys.executable, "-m", "vnetdiag.lab.backend", "--lab", spec.prefix, "--chardev", str(node),
         "--tap-netns", f"/run/netns/{netns_name(spec, m.guest.node)}", "--tap-name", m.guest.name,
         "--control", str(control), "--ready-file", str(ready)], log, journal)
    ticks = proc.start_ticks(child.pid) or 0
    deadline = time.monotonic() + 10
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text()[-300:].strip().splitlines()
            raise KernelError(f"macvtap backend for {m.node}:{m.name} did not start: "
                              f"{tail[-1] if tail else 'no output'}")
        time.sleep(0.02)
    return {"macvtap": f"{m.node}:{m.name}", "pid": child.pid, "start_ticks": ticks,
            "control": str(control), "guest": f"{m.guest.node}:{m.guest.name}"}
