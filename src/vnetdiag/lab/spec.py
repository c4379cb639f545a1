"""Load and validate lab topology files (TOML; format in docs/lab.md).

Validation errors name the file, the field and the problem in one line, so a
user can fix a topology without reading code.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from vnetdiag.errors import BadInputError
from vnetdiag.model.lab import Endpoint, LabSpec, Macvtap, Node, NodeKind, NodeRole, Tap, Veth, Vxlan

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> BadInputError:
        return BadInputError(f"{self.source}: field {where}: {problem}",
                             hint="see docs/lab.md for the topology format")

    def table(self, data: Any, where: str) -> dict:
        if not isinstance(data, dict):
            raise self.fail(where, f"must be a table, got {type(data).__name__}")
        return data

    def only(self, data: dict, where: str, allowed: set[str]) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            raise self.fail(f"{where}.{extra[0]}" if where else extra[0],
                            f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, data: dict, key: str, where: str, *, required: bool = True) -> str | None:
        if key not in data:
            if required:
                raise self.fail(f"{where}.{key}", "missing")
            return None
        value = data[key]
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def ifname(self, data: dict, key: str, where: str, *, required: bool = True) -> str | None:
        value = self.string(data, key, where, required=required)
        if value is not None and (len(value) > _IFNAMSIZ or not _NAME.match(value)):
            raise self.fail(f"{where}.{key}", f"{value!r} is not a valid interface name "
                            f"(at most {_IFNAMSIZ} characters of letters, digits, '_', '.', '-')")
        return value

    def integer(self, data: dict, key: str, where: str, lo: int, hi: int, default: int | None) -> int | None:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(f"{where}.{key}", f"must be an integer from {lo} to {hi}, got {value!r}")
        return value

    def address(self, value: Any, where: str, *, with_prefix: bool) -> str:
        try:
            if with_prefix:
                ipaddress.ip_interface(value)
                if "/" not in value:
                    raise ValueError
            else:
                ipaddress.ip_address(value)
        except (ValueError, TypeError):
            form = "an address with prefix length, like 198.51.100.1/24" if with_prefix else "an IP address"
            raise self.fail(where, f"{value!r} is not {form}") from None
        return value


def parse(data: dict, source: str = "<built-in>") -> LabSpec:
    c = _Checker(source)
    c.only(data, "", {"prefix", "nodes", "veth", "vxlan", "macvtap", "tap", "ipv6"})
    ipv6 = data.get("ipv6", True)
    if not isinstance(ipv6, bool):
        raise c.fail("ipv6", f"must be true or false, got {ipv6!r}")
    prefix = data.get("prefix", "vnd")
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise c.fail("prefix", f"{prefix!r} must be 1-8 lowercase letters or digits, starting with a letter")

    nodes_data = c.table(data.get("nodes"), "nodes") if "nodes" in data else {}
    if not nodes_data:
        raise c.fail("nodes", "a lab needs at least one node")
    nodes = []
    for name, nd in nodes_data.items():
        where = f"nodes.{name}"
        if not _NAME.match(name) or len(prefix) + 1 + len(name) > 64:
            raise c.fail(where, f"{name!r} is not a valid node name")
        nd = c.table(nd, where)
        c.only(nd, where, {"role", "bridges", "firewall", "kind", "memory_mb", "routes", "serve"})
        role = nd.get("role", "guest")
        if role not in get_args(NodeRole):
            raise c.fail(f"{where}.role", f"must be one of {', '.join(get_args(NodeRole))}, got {role!r}")
        bridges = nd.get("bridges", [])
        if not isinstance(bridges, list):
            raise c.fail(f"{where}.bridges", "must be a list of interface names")
        for i, _ in enumerate(bridges):
            c.ifname({"b": bridges[i]}, "b", f"{where}.bridges[{i}]")
        firewall = nd.get("firewall", False)
        if not isinstance(firewall, bool):
            raise c.fail(f"{where}.firewall", f"must be true or false, got {firewall!r}")
        kind = nd.get("kind", "netns")
        if kind not in get_args(NodeKind):
            raise c.fail(f"{where}.kind", f"must be one of {', '.join(get_args(NodeKind))}, got {kind!r}")
        if kind == "vm" and (bridges or firewall):
            raise c.fail(f"{where}.{'bridges' if bridges else 'firewall'}",
                         "a VM node has only the NICs its taps and macvtaps give it")
        if "memory_mb" in nd and kind != "vm":
            raise c.fail(f"{where}.memory_mb", "only a kind = \"vm\" node has memory")
        memory_mb = c.integer(nd, "memory_mb", where, 64, 65536, 256) or 256
        serve = nd.get("serve", False)
        if not isinstance(serve, bool):
            raise c.fail(f"{where}.serve", f"must be true or false, got {serve!r}")
        if serve and kind != "vm":
            raise c.fail(f"{where}.serve", "only a kind = \"vm\" node is given a server (namespaces get one per probe)")
        routes = []
        for i, rd in enumerate(nd.get("routes", []) if isinstance(nd.get("routes", []), list) else [None]):
            rw = f"{where}.routes[{i}]"
            rd = c.table(rd, rw)
            c.only(rd, rw, {"to", "via"})
            to = c.string(rd, "to", rw)
            if to != "default":
                try:
                    ipaddress.ip_network(to)
                except ValueError:
                    raise c.fail(f"{rw}.to", f"{to!r} is not a network (like 203.0.113.0/24) or \"default\"") from None
            routes.append((to, c.address(c.string(rd, "via", rw), f"{rw}.via", with_prefix=False)))
        nodes.append(Node(name=name, role=role, bridges=tuple(bridges), firewall=firewall, kind=kind,
                          memory_mb=memory_mb, serve=serve, routes=tuple(routes)))
    node_names = {n.name: n for n in nodes}

    def endpoint(ed: Any, where: str) -> Endpoint:
        ed = c.table(ed, where)
        c.only(ed, where, {"node", "name", "address", "master", "mtu"})
        node = c.string(ed, "node", where)
        if node not in node_names:
            raise c.fail(f"{where}.node", f"no node {node!r} (nodes: {', '.join(node_names)})")
        name = c.ifname(ed, "name", where)
        addr = ed.get("address")
        if addr is not None:
            c.address(addr, f"{where}.address", with_prefix=True)
        master = c.ifname(ed, "master", where, required=False)
        if master is not None and master not in node_names[node].bridges:
            raise c.fail(f"{where}.master", f"node {node!r} has no bridge {master!r}")
        mtu = c.integer(ed, "mtu", where, 68, 65535, None)
        return Endpoint(node=node, name=name, address=addr, master=master, mtu=mtu)

    def items(key: str) -> list[tuple[str, dict]]:
        raw = data.get(key, [])
        if not isinstance(raw, list):
            raise c.fail(key, "must be an array of tables ([[{key}]])")
        return [(f"{key}[{i}]", c.table(item, f"{key}[{i}]")) for i, item in enumerate(raw)]

    veths = []
    for where, vd in items("veth"):
        c.only(vd, where, {"a", "b"})
        if "a" not in vd or "b" not in vd:
            raise c.fail(f"{where}.{'a' if 'a' not in vd else 'b'}", "missing")
        veths.append(Veth(a=endpoint(vd["a"], f"{where}.a"), b=endpoint(vd["b"], f"{where}.b")))

    vxlans = []
    for where, xd in items("vxlan"):
        c.only(xd, where, {"node", "name", "vni", "underlay", "local", "remotes", "master", "dstport", "mtu"})
        node = c.string(xd, "node", where)
        if node not in node_names:
            raise c.fail(f"{where}.node", f"no node {node!r}")
        remotes = xd.get("remotes", [])
        if not isinstance(remotes, list) or not remotes:
            raise c.fail(f"{where}.remotes", "must be a non-empty list of addresses")
        master = c.ifname(xd, "master", where, required=False)
        if master is not None and master not in node_names[node].bridges:
            raise c.fail(f"{where}.master", f"node {node!r} has no bridge {master!r}")
        vxlans.append(Vxlan(
            node=node, name=c.ifname(xd, "name", where), vni=c.integer(xd, "vni", where, 1, 2**24 - 1, None) or 0,
            underlay=c.ifname(xd, "underlay", where),
            local=c.address(c.string(xd, "local", where), f"{where}.local", with_prefix=False),
            remotes=tuple(c.address(r, f"{where}.remotes", with_prefix=False) for r in remotes),
            master=master, dstport=c.integer(xd, "dstport", where, 1, 65535, 4789) or 4789,
            mtu=c.integer(xd, "mtu", where, 68, 65535, 1500) or 1500))
        if "vni" not in xd:
            raise c.fail(f"{where}.vni", "missing")

    macvtaps = []
    for where, md in items("macvtap"):
        c.only(md, where, {"node", "name", "lower", "guest", "mode"})
        node = c.string(md, "node", where)
        if node not in node_names:
            raise c.fail(f"{where}.node", f"no node {node!r}")
        mode = md.get("mode", "bridge")
        if mode not in ("bridge", "vepa", "private", "passthru"):
            raise c.fail(f"{where}.mode", f"must be bridge, vepa, private or passthru, got {mode!r}")
        if "guest" not in md:
            raise c.fail(f"{where}.guest", "missing")
        macvtaps.append(Macvtap(node=node, name=c.ifname(md, "name", where), lower=c.ifname(md, "lower", where),
                                guest=endpoint(md["guest"], f"{where}.guest"), mode=mode))

    taps = []
    for where, td in items("tap"):
        c.only(td, where, {"node", "name", "master", "mtu", "queues", "guest"})
        node = c.string(td, "node", where)
        if node not in node_names:
            raise c.fail(f"{where}.node", f"no node {node!r}")
        master = c.ifname(td, "master", where, required=False)
        if master is not None and master not in node_names[node].bridges:
            raise c.fail(f"{where}.master", f"node {node!r} has no bridge {master!r}")
        if "guest" not in td:
            raise c.fail(f"{where}.guest", "missing")
        guest = endpoint(td["guest"], f"{where}.guest")
        if node_names[guest.node].kind != "vm":
            raise c.fail(f"{where}.guest.node", f"{guest.node!r} is not a kind = \"vm\" node")
        taps.append(Tap(node=node, name=c.ifname(td, "name", where), master=master, guest=guest,
                        mtu=c.integer(td, "mtu", where, 68, 65535, None),
                        queues=c.integer(td, "queues", where, 1, 8, 1) or 1))

    spec = LabSpec(prefix=prefix, nodes=tuple(nodes), veths=tuple(veths), vxlans=tuple(vxlans),
                   macvtaps=tuple(macvtaps), taps=tuple(taps), ipv6=ipv6, source=source)
    _check_unique(spec, c)
    return spec


def _check_unique(spec: LabSpec, c: _Checker) -> None:
    seen: set[tuple[str, str]] = set()
    for node in spec.nodes:
        for b in node.bridges:
            seen.add((node.name, b))
    for ep in spec.endpoints():
        key = (ep.node, ep.name)
        if key in seen:
            raise c.fail(f"{ep.node}:{ep.name}", "interface defined twice in the same node")
        seen.add(key)
    for x in spec.vxlans:
        if (x.node, x.underlay) not in seen:
            raise c.fail(f"vxlan {x.node}:{x.name}.underlay", f"no interface {x.underlay!r} in node {x.node!r}")
    vm_nics = {(m.guest.node, m.guest.name) for m in spec.macvtaps} | {(t.guest.node, t.guest.name) for t in spec.taps}
    for host in (*spec.taps, *spec.macvtaps):
        if spec.node(host.node).kind == "vm":
            raise c.fail(f"{host.node}:{host.name}", "a tap or macvtap lives in a namespace node, not in a VM")
    for ep in spec.endpoints():
        if spec.node(ep.node).kind == "vm" and (ep.node, ep.name) not in vm_nics:
            raise c.fail(f"{ep.node}:{ep.name}", "a VM node's interfaces are the guest ends of taps and macvtaps")
    for m in spec.macvtaps:
        if (m.node, m.lower) not in seen:
            raise c.fail(f"macvtap {m.node}:{m.name}.lower", f"no interface {m.lower!r} in node {m.node!r}")


def load(path: str | Path) -> LabSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise BadInputError(f"{p}: no such topology file", hint="give the path of a TOML topology (docs/lab.md)") from None
    except OSError as exc:
        raise BadInputError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{p}: not valid TOML: {exc}", hint="see docs/lab.md for the topology format") from None
    return parse(data, str(p))


def default(prefix: str | None = None) -> LabSpec:
    """The built-in lab (prefix overridable, for tests and parallel users)."""
    data = tomllib.loads(resources.files("vnetdiag.lab").joinpath("default.toml").read_text())
    if prefix:
        data["prefix"] = prefix
    return parse(data)
