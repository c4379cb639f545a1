"""Which devices does a packet from A to B cross? A walk over the discovered
topology, asking the kernel only for route decisions (``RouteLookup``).

The walk follows what the kernel would do with one packet: route lookup and
neighbour entry in the sending namespace (with none yet for an on-link
destination, the MAC of the device that owns the address in TO, which its
ARP/ND answer would give), veth peers, bridge forwarding by FDB
(refusing to guess when the MAC is not learned: the flood candidates are
listed instead), vxlan encapsulation by the vxlan FDB and the underlay route,
decapsulation at the VTEP owning the remote address, macvlan/macvtap uppers by
destination MAC, and tap/macvtap character devices through the process that
holds them (the VM or its backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vnetdiag.errors import NotFoundError, UsageError
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import FORMS_HELP, IfRef, matches, parse_spec, split_endpoint
from vnetdiag.model.topology import Hop, PathResult, Topology
from vnetdiag.topology.routes import RouteLookup

MAX_STEPS = 64
_NUD_UNUSABLE = 0x01 | 0x20  # incomplete, failed


@dataclass
class _Packet:
    dst_ip: str
    dst_mac: str | None
    encap: list[tuple[str | None, str, int]] = field(default_factory=list)
    """Stack of (inner dst MAC, inner dst IP, VNI) while inside a vxlan tunnel."""


class _Walk:
    def __init__(self, topo: Topology, route: RouteLookup) -> None:
        self.topo = topo
        self.route = route
        self.target: Interface | None = None
        """The device that owns the destination address in TO's namespace, when known."""
        self.by_ref = {x.ref: x for x in topo.interfaces}
        self.labels = {n.inode: n.label for n in topo.namespaces}
        self.hops: list[Hop] = []
        self.stopped: str | None = None
        self.flood: tuple[str, ...] = ()
        self.complete = False
        self.holders: dict[str, list[str]] = {}
        for e in topo.edges:
            if e.type == "tap-owner":
                self.holders.setdefault(e.source, []).append(e.target)
        self.proc_names = {n.id: n.name for n in topo.nodes if n.type == "process"}
        self.vms = {n.id: n.attrs["vm"] for n in topo.nodes if n.type == "process" and "vm" in n.attrs}

    # -- helpers ------------------------------------------------------------
    def emit(self, x: Interface | None, role: str, how: str, *, name: str | None = None) -> None:
        self.hops.append(Hop(ref=x.ref if x else None, name=name or (x.name if x else "?"),
                             netns_inode=x.ref.netns_inode if x else None,
                             netns_name=self.labels.get(x.ref.netns_inode) if x else None,
                             kind=x.kind if x else None, role=role, how=how))

    def iface(self, ns: int, ifindex: int | None) -> Interface | None:
        return self.by_ref.get(IfRef(netns_inode=ns, ifindex=ifindex)) if ifindex else None

    def local_owner(self, ns: int, ip: str) -> Interface | None:
        for a in self.topo.addresses:
            if a.ref.netns_inode == ns and a.address == ip:
                return self.by_ref.get(a.ref)
        return None

    def neighbour(self, ns: int, ifindex: int, ip: str) -> str | None:
        for n in self.topo.neighbours:
            if n.ref == IfRef(netns_inode=ns, ifindex=ifindex) and n.address == ip and n.mac \
                    and not n.state & _NUD_UNUSABLE:
                return n.mac
        return None

    def stop(self, why: str) -> None:
        self.stopped = why

    # -- the walk -----------------------------------------------------------
    def run(self, ns: int, pkt: _Packet) -> None:
        state = ("l3", ns, None)
        seen: set = set()
        for _ in range(MAX_STEPS):
            if state is None or self.stopped or self.complete:
                return
            key = (state[0], state[1], state[2].ref if state[2] else None, len(pkt.encap))
            if key in seen:
                self.stop("loop: the walk came back to a device it had crossed")
                return
            seen.add(key)
            action, ns, x = state
            state = getattr(self, f"_{action}")(ns, x, pkt)
        self.stop(f"gave up after {MAX_STEPS} steps")

    def _l3(self, ns: int, _x, pkt: _Packet):
        ip = pkt.dst_ip
        owner = self.local_owner(ns, ip)
        if owner is not None:
            if pkt.encap:
                return self._decap(ns, ip, pkt)
            self.emit(owner, "deliver", f"{ip} is local to {self.labels.get(ns, ns)}")
            self.complete = True
            return None
        r = self.route(ns, ip)
        if r is None or r.type not in ("unicast", "local"):
            self.stop(f"no route to {ip} in {self.labels.get(ns, ns)}" + (f" ({r.type})" if r else ""))
            return None
        out = self.iface(ns, r.oif)
        if out is None:
            self.stop(f"route to {ip} in {self.labels.get(ns, ns)} uses an unknown device #{r.oif}")
            return None
        nh = r.gateway or ip
        pkt.dst_mac = self.neighbour(ns, out.ref.ifindex, nh)
        how = f"route to {ip}" + (f" via {r.gateway}" if r.gateway else "") + f" dev {out.name}"
        how += f", neighbour {nh} is {pkt.dst_mac}" if pkt.dst_mac else f", no neighbour entry for {nh} yet"
        if pkt.dst_mac is None and nh == ip and self.target is not None and self.target.mac:
            # On-link and unresolved (a fresh link, a failed ARP/ND): the address's
            # owner is known, so is the MAC its answer would give; the FDB decides the rest.
            pkt.dst_mac = self.target.mac
            how += f"; taken as {self.target.name}'s MAC {pkt.dst_mac}, the owner of {ip} in TO"
        self.emit(out, "egress", how)
        return ("egress", ns, out)

    def _decap(self, ns: int, ip: str, pkt: _Packet):
        inner_mac, inner_ip, vni = pkt.encap[-1]
        for v in self.topo.interfaces:
            if v.ref.netns_inode == ns and v.kind == "vxlan" and v.vxlan and v.vxlan.vni == vni \
                    and v.vxlan.local in (None, ip):
                pkt.encap.pop()
                pkt.dst_ip, pkt.dst_mac = inner_ip, inner_mac
                self.emit(v, "ingress", f"VTEP {ip}: decapsulated VNI {vni}")
                return ("ingress", ns, v)
        self.stop(f"{ip} in {self.labels.get(ns, ns)} has no vxlan device for VNI {vni}")
        return None

    def _egress(self, ns: int, x: Interface, pkt: _Packet):
        if x.kind == "veth":
            peer = self.by_ref.get(x.link) if x.link else None
            if peer is None:
                self.stop(f"the veth peer of {x.name} is not visible (namespace not readable?)")
                return None
            self.emit(peer, "ingress", f"veth peer of {x.name}")
            return ("ingress", peer.ref.netns_inode, peer)
        if x.kind == "vxlan" and x.vxlan:
            return self._encap(ns, x, pkt)
        if x.kind == "bridge":
            return self._bridge(ns, x, None, pkt)
        if x.kind == "tun" or x.kind == "macvtap":
            return self._through_process(x, pkt)
        if x.kind in ("macvlan",) and x.link:
            lower = self.by_ref.get(x.link)
            if lower is not None:
                self.emit(lower, "egress", f"lower device of {x.name}")
                return ("egress", lower.ref.netns_inode, lower)
        self.emit(x, "leave", f"leaves the host through {x.name} ({x.kind or x.driver or 'device'})")
        self.stop(f"the packet leaves the host through {x.name}")
        return None

    def _encap(self, ns: int, x: Interface, pkt: _Packet):
        specific = [e for e in self.topo.fdb if e.device == x.ref and e.mac == pkt.dst_mac and e.remote]
        default = [e for e in self.topo.fdb if e.device == x.ref and e.mac == "00:00:00:00:00:00" and e.remote]
        if specific:
            remote, how = specific[0].remote, f"vxlan FDB: {pkt.dst_mac} behind VTEP {specific[0].remote}"
        elif len(default) == 1 or (not default and x.vxlan.remote):
            remote = default[0].remote if default else x.vxlan.remote
            how = f"vxlan default destination {remote} ({pkt.dst_mac or 'MAC unknown'} not in the vxlan FDB)"
        else:
            self.flood = tuple(e.remote for e in default)
            self.stop(f"{x.name}: {pkt.dst_mac or 'the MAC'} not in the vxlan FDB; it would be flooded "
                      f"to {len(default)} VTEPs")
            return None
        pkt.encap.append((pkt.dst_mac, pkt.dst_ip, x.vxlan.vni))
        pkt.dst_ip = remote
        self.emit(x, "forward", f"encapsulated in VNI {x.vxlan.vni} to {remote}:{x.vxlan.port}; {how}")
        return ("l3", ns, None)

    def _bridge(self, ns: int, br: Interface, came_in: Interface | None, pkt: _Packet):
        ports = [p for p in self.topo.interfaces if p.ref.netns_inode == ns and p.master_ifindex == br.ref.ifindex]
        entry = None
        if pkt.dst_mac:
            for e in self.topo.fdb:
                if e.device.netns_inode == ns and e.bridge_ifindex == br.ref.ifindex and e.mac == pkt.dst_mac:
                    entry = e
                    break
            if entry is None and pkt.dst_mac == br.mac:
                return self._l3(ns, br, pkt)
        if entry is None:
            self.flood = tuple(f"{self.labels.get(ns, ns)}/{p.name}" for p in ports if p is not came_in)
            self.stop(f"bridge {br.name}: {pkt.dst_mac or 'destination MAC unknown'} not learned in the FDB yet; "
                      f"it floods to {len(self.flood)} ports")
            return None
        if entry.local:
            self.emit(br, "forward", f"{pkt.dst_mac} is the bridge's own: up to the stack")
            return ("l3", ns, None)
        port = self.by_ref.get(entry.device)
        if port is None:
            self.stop(f"bridge {br.name}: FDB port #{entry.device.ifindex} is unknown")
            return None
        if came_in is not None and port.ref == came_in.ref:
            self.stop(f"bridge {br.name}: {pkt.dst_mac} is behind the port it came in on ({port.name})")
            return None
        self.emit(port, "egress", f"bridge {br.name} FDB: {pkt.dst_mac} on port {port.name}")
        return ("egress", ns, port)

    def _ingress(self, ns: int, x: Interface, pkt: _Packet):
        if x.master_ifindex:
            br = self.iface(ns, x.master_ifindex)
            if br is not None and br.kind == "bridge":
                self.emit(br, "forward", f"{x.name} is a port of bridge {br.name}")
                return self._bridge(ns, br, x, pkt)
        uppers = [u for u in self.topo.interfaces if u.link == x.ref and u.kind in ("macvlan", "macvtap")]
        if uppers and pkt.dst_mac:
            match = [u for u in uppers if u.mac == pkt.dst_mac]
            if match:
                u = match[0]
                self.emit(u, "ingress", f"{u.kind} on {x.name} with destination MAC {pkt.dst_mac}")
                if u.kind == "macvtap":
                    return self._through_process(u, pkt)
                return ("l3", u.ref.netns_inode, None)
        return ("l3", ns, None)

    def _through_process(self, x: Interface, pkt: _Packet):
        """A frame delivered to a tap/macvtap's file descriptor: the process holding
        it carries it to the other device it holds (a VM, a vhost backend)."""
        procs = [p for p, devs in self.holders.items() if x.id in devs]
        if not procs:
            self.stop(f"{x.name}: no process holds its character device (frames stay queued there)")
            return None
        proc = procs[0]
        if proc in self.vms:
            return self._into_vm(self.vms[proc], x, pkt)
        others = [d for d in self.holders[proc] if d != x.id]
        self.hops.append(Hop(ref=None, name=self.proc_names.get(proc, proc), netns_inode=None, netns_name=None,
                             kind=None, role="process", how=f"reads {x.name}'s file descriptor"))
        if len(others) != 1:
            self.stop(f"process {self.proc_names.get(proc, proc)} holds {len(others)} other devices: "
                      "which one it writes to is not known")
            return None
        nxt = next(i for i in self.topo.interfaces if i.id == others[0])
        if nxt.kind == "macvtap":
            # Written into a macvtap: transmitted on its lower device.
            lower = self.by_ref.get(nxt.link) if nxt.link else None
            self.emit(nxt, "forward", f"written into {nxt.name} by the process")
            if lower is None:
                self.stop(f"{nxt.name}: lower device not visible")
                return None
            self.emit(lower, "egress", f"lower device of {nxt.name}")
            return ("egress", lower.ref.netns_inode, lower)
        self.emit(nxt, "ingress", f"written into {nxt.name} by the process")
        return ("ingress", nxt.ref.netns_inode, nxt)


    def _into_vm(self, vm: dict, x: Interface, pkt: _Packet):
        """The frame is read by QEMU into a guest NIC: as far as the host can
        follow it. Reaching the NIC the destination MAC names is the end of the
        path; what the guest does next is not observable from here."""
        nic = next((n for n in vm["nics"] if n.get("host_id") == x.id), None)
        what = f"{nic['model']} NIC {nic['mac']}" if nic else "a NIC"
        self.hops.append(Hop(ref=None, name=vm["name"], netns_inode=None, netns_name=None, kind="vm",
                             role="deliver", how=f"QEMU (pid {vm['pid']}) reads {x.name} into the guest's {what}; "
                                                 "the guest's inside is not observable"))
        if nic and pkt.dst_mac and nic["mac"] and nic["mac"].lower() == pkt.dst_mac.lower():
            self.complete = True
        else:
            self.stop(f"enters VM {vm['name']} ({pkt.dst_mac or 'MAC unknown'} is not its NIC's MAC): "
                      "where the guest sends it is not observable")
        return None


def namespace_of(topo: Topology, spec: str) -> int:
    """A namespace inode from any form that needs no system lookup (a name,
    "host", an inode or netns:INODE); callers resolve pid:/path forms first
    (``vnetdiag.naming``) and pass netns:INODE."""
    try:
        parsed = parse_spec(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    got = [n for n in topo.namespaces if n.name == spec] or [n for n in topo.namespaces if matches(parsed, n)]
    if len(got) == 1:
        return got[0].inode
    known = ", ".join(n.label for n in topo.namespaces)
    raise NotFoundError(f"no network namespace {spec!r}" if not got else f"{spec!r} names {len(got)} namespaces",
                        hint=f"give {FORMS_HELP}; namespaces: {known}")


def default_address(topo: Topology, ns: int) -> str | None:
    """The namespace's first global address, IPv4 first."""
    addrs = [a for a in topo.addresses if a.ref.netns_inode == ns and a.scope == 0]
    addrs.sort(key=lambda a: (":" in a.address, a.ref.ifindex))
    return addrs[0].address if addrs else None


def parse_endpoint(spec: str) -> tuple[str, str | None]:
    """"NS" or "NS:ADDRESS" (model.namespaces.split_endpoint)."""
    try:
        return split_endpoint(spec)
    except ValueError as exc:
        raise NotFoundError(str(exc), hint="write NAMESPACE or NAMESPACE:ADDRESS") from None


def resolve(topo: Topology, route: RouteLookup, src: str, dst: str) -> PathResult:
    """The devices a packet from ``src`` to ``dst`` crosses ("NS" or "NS:ADDR")."""
    src_ns_spec, src_addr = parse_endpoint(src)
    dst_ns_spec, dst_addr = parse_endpoint(dst)
    src_ns, dst_ns = namespace_of(topo, src_ns_spec), namespace_of(topo, dst_ns_spec)
    dst_addr = dst_addr or default_address(topo, dst_ns)
    if dst_addr is None:
        raise NotFoundError(f"namespace {dst_ns_spec} has no global address to send to",
                            hint="give one: NAMESPACE:ADDRESS")
    src_addr = src_addr or default_address(topo, src_ns)
    walk = _Walk(topo, route)
    walk.target = walk.local_owner(dst_ns, dst_addr)
    walk.run(src_ns, _Packet(dst_ip=dst_addr, dst_mac=None))
    # A VM's address lives in no namespace: reaching its NIC is the end, whatever namespace TO named.
    if walk.complete and walk.hops and walk.hops[-1].kind != "vm" and walk.hops[-1].netns_inode != dst_ns:
        walk.complete = False
        walk.stopped = (f"{dst_addr} was delivered in {walk.hops[-1].netns_name}, not in {dst_ns_spec}")
    return PathResult(source=src, destination=dst, src_address=src_addr, dst_address=dst_addr,
                      hops=tuple(walk.hops), complete=walk.complete, stopped=walk.stopped,
                      flood_candidates=walk.flood)


def document(results: list[PathResult]) -> dict:
    """The ``vnetdiag.path/1`` document of one or two resolved paths."""
    from dataclasses import asdict

    return {"schema": "vnetdiag.path/1",
            "paths": [asdict(r) | {"hops": [asdict(h) | {"id": h.ref.id if h.ref else None} for h in r.hops]}
                      for r in results]}
