"""Discover the topology from a counter snapshot's inventory plus the few
tables the inventory does not hold (bridge/vxlan FDB, addresses, neighbours)
and the processes holding tap/macvtap character devices.

The interfaces are not read again: ``discover(snapshot, pool)`` uses the
snapshot's records and the pool's open sockets (system/nspool.py).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

from vnetdiag.errors import VnetdiagError
from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import IfRef
from vnetdiag.model.topology import Address, Edge, FdbEntry, Neighbour, Node, Topology
from vnetdiag.system import rtnl, tunfd
from vnetdiag.system.nspool import NetlinkPool

AF_BRIDGE = 7
NDA_DST, NDA_LLADDR, NDA_VLAN, NDA_VNI, NDA_MASTER = 1, 2, 5, 7, 9
IFA_ADDRESS, IFA_LOCAL = 1, 2
NUD_NOARP, NUD_PERMANENT, NUD_FAILED, NUD_INCOMPLETE = 0x40, 0x80, 0x20, 0x01


def decode_fdb(ns_inode: int, payload: bytes) -> FdbEntry | None:
    _fam, ifindex, state, _flags, _type = rtnl.NDMSG.unpack_from(payload, 0)
    a = rtnl.attrs(payload, rtnl.NDMSG.size)
    if NDA_LLADDR not in a:
        return None
    return FdbEntry(
        device=IfRef(netns_inode=ns_inode, ifindex=ifindex),
        bridge_ifindex=rtnl.u32(payload, a[NDA_MASTER]) if NDA_MASTER in a else None,
        mac=rtnl.mac(payload, a[NDA_LLADDR]),
        vlan=rtnl.u16(payload, a[NDA_VLAN]) if NDA_VLAN in a else None,
        remote=rtnl.ip(payload, a[NDA_DST]) if NDA_DST in a else None,
        vni=rtnl.u32(payload, a[NDA_VNI]) if NDA_VNI in a else None,
        local=bool(state & NUD_PERMANENT),
        static=bool(state & NUD_NOARP),
    )


def decode_neigh(ns_inode: int, payload: bytes) -> Neighbour | None:
    _fam, ifindex, state, _flags, _type = rtnl.NDMSG.unpack_from(payload, 0)
    a = rtnl.attrs(payload, rtnl.NDMSG.size)
    if NDA_DST not in a:
        return None
    return Neighbour(ref=IfRef(netns_inode=ns_inode, ifindex=ifindex), address=rtnl.ip(payload, a[NDA_DST]),
                     mac=rtnl.mac(payload, a[NDA_LLADDR]) if NDA_LLADDR in a else None, state=state)


def decode_addr(ns_inode: int, payload: bytes) -> Address | None:
    _fam, plen, _flags, scope, index = rtnl.IFADDRMSG.unpack_from(payload, 0)
    a = rtnl.attrs(payload, rtnl.IFADDRMSG.size)
    span = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
    if span is None:
        return None
    return Address(ref=IfRef(netns_inode=ns_inode, ifindex=index), address=rtnl.ip(payload, span),
                   prefixlen=plen, scope=scope)


def scan_device_holders(proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> list[dict]:
    """Processes holding tun/tap or macvtap character devices open:
    [{"pid", "comm", "netns_inode", "tun_name", "tun_netns_inode"}] or
    [{..., "macvtap_name", "macvtap_ifindex", "macvtap_mac"}].
    tun fds name their device in /proc/PID/fdinfo ("iff:"); a macvtap's char
    device (major:minor, wherever its node lives) is named in /sys/dev/char as
    .../net/NAME/tapIFINDEX. The namespace (tun) or MAC (macvtap) that tells
    same-named devices apart comes from the device itself (system/tunfd.py)."""
    out = []
    seen: set[tuple] = set()
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        fd_dir = f"{entry.path}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        pid = int(entry.name)
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("/") or target.startswith(("/proc/", "/sys/", "/dev/null", "/dev/pts")):
                continue
            item = None
            if target == "/dev/net/tun":
                try:
                    info = Path(f"{entry.path}/fdinfo/{fd}").read_text()
                except OSError:
                    continue
                for line in info.splitlines():
                    if line.startswith("iff:"):
                        item = {"tun_name": line.split(":", 1)[1].strip()}
                if item is not None:
                    item["tun_netns_inode"] = tunfd.ask_borrowed(pid, int(fd), tunfd.tun_netns_inode)
            else:
                try:
                    st = os.stat(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if not stat.S_ISCHR(st.st_mode):
                    continue
                try:
                    link = os.readlink(sys_root / f"dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
                except OSError:
                    continue
                # e.g. ../../devices/virtual/net/mvtap0/macvtap/tap8
                parts = link.split("/")
                if "net" in parts[:-1] and parts[-1].startswith("tap") and parts[-1][3:].isdigit():
                    name = parts[len(parts) - 1 - parts[::-1].index("net") + 1]
                    item = {"macvtap_name": name, "macvtap_ifindex": int(parts[-1][3:]),
                            "macvtap_mac": tunfd.ask_borrowed(pid, int(fd), tunfd.tap_mac)}
            if item is None:
                continue
            key = (pid, tuple(sorted(item.items())))
            if key in seen:
                continue  # multiqueue: several fds on one device
            seen.add(key)
            try:
                ns_inode = os.stat(f"{entry.path}/ns/net").st_ino
            except OSError:
                ns_inode = None
            try:
                comm = Path(f"{entry.path}/comm").read_text().strip()
            except OSError:
                comm = "?"
            out.append({"pid": pid, "comm": comm, "netns_inode": ns_inode, **item})
    return out


def discover(snap: CounterSnapshot, pool: NetlinkPool, *, holders: list[dict] | None = None,
             vms: list | None = None) -> Topology:
    """Build the topology of everything in ``snap`` (which ``pool`` collected)."""
    problems: list[str] = list(f"{p.where}: {p.what}" for p in snap.problems)
    fdb: list[FdbEntry] = []
    addrs: list[Address] = []
    neigh: list[Neighbour] = []
    for ns in snap.namespaces:
        h = pool.handle(ns.inode)
        if h is None:
            problems.append(f"{ns.label}: no longer open (namespace deleted?)")
            continue
        try:
            fdb += filter(None, (decode_fdb(ns.inode, p) for t, p in rtnl.dump_neigh(h.nl, AF_BRIDGE)
                                 if t == rtnl.RTM_NEWNEIGH))
            for fam in (socket.AF_INET, socket.AF_INET6):
                neigh += filter(None, (decode_neigh(ns.inode, p) for t, p in rtnl.dump_neigh(h.nl, fam)
                                       if t == rtnl.RTM_NEWNEIGH))
            addrs += filter(None, (decode_addr(ns.inode, p) for t, p in rtnl.dump_addrs(h.nl)
                                   if t == rtnl.RTM_NEWADDR))
        except (OSError, VnetdiagError) as exc:
            problems.append(f"{ns.label}: {exc}")
    if holders is None:
        holders = scan_device_holders(pool.proc_root)
    if vms is None:
        from vnetdiag.topology.vms import scan_vms

        vms = scan_vms(pool.proc_root)
    return build(snap, fdb=fdb, addresses=addrs, neighbours=neigh, holders=holders, problems=problems, vms=vms)


def build(snap: CounterSnapshot, *, fdb, addresses, neighbours, holders, problems=(), vms=()) -> Topology:
    """The graph from already-read tables (pure: tested on recorded inputs)."""
    ifaces = [i.interface for i in snap.interfaces]
    by_ref = {x.ref: x for x in ifaces}
    labels = {n.inode: n.label for n in snap.namespaces}
    nodes: list[Node] = [Node(id=f"netns:{n.inode}", type="netns", name=n.label, netns_inode=n.inode,
                              attrs={"pids": [h.pid for h in n.holders], "is_host": n.is_host})
                         for n in snap.namespaces]
    edges: list[Edge] = []
    for x in ifaces:
        attrs = {"mac": x.mac, "mtu": x.mtu, "operstate": x.operstate, "driver": x.driver,
                 "netns": labels.get(x.ref.netns_inode), "ifindex": x.ref.ifindex}
        if x.vxlan:
            attrs.update(vni=x.vxlan.vni, local=x.vxlan.local, remote=x.vxlan.remote, port=x.vxlan.port)
        if x.tun:
            attrs["tun_type"] = x.tun.type
        if x.macvlan_mode:
            attrs["mode"] = x.macvlan_mode
        nodes.append(Node(id=x.id, type="interface", name=x.name, netns_inode=x.ref.netns_inode,
                          kind=x.kind, attrs=attrs))
    for x in ifaces:
        if x.master_ifindex:
            m = IfRef(netns_inode=x.ref.netns_inode, ifindex=x.master_ifindex)
            if m in by_ref:
                edges.append(Edge(source=x.id, target=m.id, type="master"))
        if x.link is not None and x.link in by_ref:
            if x.kind == "veth":
                if x.ref < x.link:  # one edge per pair
                    edges.append(Edge(source=x.id, target=x.link.id, type="veth-peer"))
            else:
                edges.append(Edge(source=x.id, target=x.link.id, type="lower"))
        if x.vxlan and x.vxlan.underlay_ifindex:
            u = IfRef(netns_inode=x.ref.netns_inode, ifindex=x.vxlan.underlay_ifindex)
            if u in by_ref:
                edges.append(Edge(source=x.id, target=u.id, type="lower", attrs={"underlay": True}))
    edges += _vxlan_edges(ifaces, fdb, addresses)
    vm_attrs = {v.pid: _vm_attrs(v, ifaces) for v in vms}
    held_pids = {h["pid"] for h in holders}
    for v in vms:  # a VM whose NICs hold no host device still is a VM on this host
        if v.pid not in held_pids:
            nodes.append(Node(id=f"proc:{v.pid}", type="process", name=v.name, netns_inode=v.netns_inode,
                              attrs={"pid": v.pid, "comm": "qemu", "vm": vm_attrs[v.pid]}))
    for hold in holders:
        pid_id = f"proc:{hold['pid']}"
        targets = _held_devices(hold, ifaces)
        if not targets:
            continue
        if not any(n.id == pid_id for n in nodes):
            vm = vm_attrs.get(hold["pid"])
            nodes.append(Node(id=pid_id, type="process", name=vm["name"] if vm else f"{hold['comm']}[{hold['pid']}]",
                              netns_inode=hold.get("netns_inode"),
                              attrs={"pid": hold["pid"], "comm": hold["comm"], **({"vm": vm} if vm else {})}))
        for t in targets:
            edges.append(Edge(source=pid_id, target=t.id, type="tap-owner",
                              attrs={"ambiguous": len(targets) > 1}))
    by_mac: dict[str, list[Interface]] = {}
    for x in ifaces:
        if x.mac:
            by_mac.setdefault(x.mac, []).append(x)
    for e in fdb:
        if e.local or e.bridge_ifindex is None or e.device not in by_ref:
            continue
        for owner in by_mac.get(e.mac, ()):
            if owner.ref != e.device:
                edges.append(Edge(source=e.device.id, target=owner.id, type="fdb",
                                  attrs={"mac": e.mac, "static": e.static}))
    return Topology(taken_unix_s=snap.taken_unix_s if snap else time.time(), namespaces=snap.namespaces,
                    interfaces=tuple(ifaces), nodes=tuple(nodes), edges=tuple(edges), fdb=tuple(fdb),
                    addresses=tuple(addresses), neighbours=tuple(neighbours), problems=tuple(problems))


def vxlan_remotes(x: Interface, fdb) -> set[str]:
    """Remote VTEPs of a vxlan device: its configured remote and FDB destinations."""
    out = {e.remote for e in fdb if e.device == x.ref and e.remote and e.remote not in ("0.0.0.0", "::")}
    if x.vxlan and x.vxlan.remote:
        out.add(x.vxlan.remote)
    return out


def local_vtep(x: Interface, addresses) -> set[str]:
    if x.vxlan and x.vxlan.local:
        return {x.vxlan.local}
    return {a.address for a in addresses if a.ref.netns_inode == x.ref.netns_inode and a.scope == 0}


def _vxlan_edges(ifaces, fdb, addresses) -> list[Edge]:
    """vxlan device -> vxlan device on the other end (same VNI, its local VTEP
    is one of our remotes)."""
    vx = [x for x in ifaces if x.kind == "vxlan" and x.vxlan]
    edges = []
    for a in vx:
        remotes = vxlan_remotes(a, fdb)
        for b in vx:
            if b is a or b.vxlan.vni != a.vxlan.vni:
                continue
            hit = remotes & local_vtep(b, addresses)
            if hit:
                edges.append(Edge(source=a.id, target=b.id, type="vxlan",
                                  attrs={"vni": a.vxlan.vni, "remote": sorted(hit)[0], "port": a.vxlan.port}))
    return edges


def _vm_attrs(vm, ifaces) -> dict:
    """A QEMU process's NICs, each with the interface id of its host device."""
    nics = []
    for n in vm.nics:
        dev = n.device
        ids: list[str] = []
        if dev is not None and dev.kind == "macvtap":
            ids = [x.id for x in _held_devices({"macvtap_name": dev.name, "macvtap_ifindex": dev.ifindex,
                                                "macvtap_mac": dev.mac}, ifaces)]
        elif dev is not None:
            ids = [x.id for x in _held_devices({"tun_name": dev.name, "tun_netns_inode": dev.netns_inode}, ifaces)]
        nics.append({"netdev": n.netdev, "model": n.model, "mac": n.mac, "queues": n.queues, "vhost": n.vhost,
                     "backend": n.backend, "host_kind": dev.kind if dev else None,
                     "host_device": dev.name if dev else None, "host_id": ids[0] if len(ids) == 1 else None})
    return {"name": vm.name, "pid": vm.pid, "nics": nics, "inside_observable": False}


def _held_devices(hold: dict, ifaces) -> list[Interface]:
    if "macvtap_name" in hold:
        cands = [x for x in ifaces if x.kind in ("macvtap", "macvlan") and x.name == hold["macvtap_name"]
                 and x.ref.ifindex == hold["macvtap_ifindex"]]
        if hold.get("macvtap_mac"):
            cands = [x for x in cands if x.mac == hold["macvtap_mac"]]
        return cands
    cands = [x for x in ifaces if x.kind == "tun" and x.name == hold["tun_name"]]
    if hold.get("tun_netns_inode") is not None:
        return [x for x in cands if x.ref.netns_inode == hold["tun_netns_inode"]]
    return cands
