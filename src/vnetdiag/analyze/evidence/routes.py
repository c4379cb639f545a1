"""Routing configuration that explains where the probe's packets died: a route
or policy rule that refuses their destination (unreachable, prohibit,
blackhole) in the namespace where a drop with no specific reason happened, or,
for a reverse-path filter drop, the route back that leaves by another device.
Configuration alone proves no loss, so this kind adds no candidate: it types
and explains the drops others placed (a generic ``drop`` becomes ``no-route``).
"""

from __future__ import annotations

import ipaddress

from vnetdiag.analyze.evidence.base import Candidates, Context, is_generic
from vnetdiag.analyze.evidence.protocol import cause_of_reason
from vnetdiag.model.routes import REFUSING_TYPES, NetnsRoutes, Route, Rule

name = "route"
source = "config"
weight = 0.35
confirm = ("ip route show table all and ip rule show in {netns}: the route or rule named here refuses packets "
           "to {server}; ip route get {server} (with the rule's match, e.g. mark) shows it; removing it, or "
           "narrowing the rule, must stop the drops")


def _covers(prefix: str | None, addr: str) -> int | None:
    """The prefix length by which ``prefix`` covers ``addr`` (None: it does not)."""
    if prefix is None or prefix == "default":
        return 0
    try:
        net = ipaddress.ip_network(prefix, strict=False)
        return net.prefixlen if ipaddress.ip_address(addr) in net else None
    except ValueError:
        return None


def best_route(routes: tuple[Route, ...], table: str, addr: str) -> Route | None:
    """The longest-prefix match for ``addr`` in one table."""
    family = ipaddress.ip_address(addr).version
    hits = [(n, r) for r in routes if r.table == table and r.family == family
            for n in [_covers(r.dst, addr)] if n is not None]
    return max(hits, key=lambda h: h[0])[1] if hits else None


def refusals(nr: NetnsRoutes, src: str, dst: str) -> list[str]:
    """Why packets from ``src`` to ``dst`` may be refused here, by the rules in
    priority order: a refusing rule that matches, or a refusing route that is the
    longest match in a table a rule looks up. Selectors that cannot be evaluated
    from the addresses (fwmark, iif, oif) make the finding conditional, said so."""
    family = ipaddress.ip_address(dst).version
    out = []
    for rule in sorted((r for r in nr.rules if r.family == family), key=lambda r: r.priority):
        if _covers(rule.src, src) is None or _covers(rule.dst, dst) is None:
            continue
        when = f"rule {rule.priority} ({rule.selector})"
        decided = False
        if rule.action in REFUSING_TYPES:
            out.append(f"{when} is {rule.action}")
            decided = True
        elif rule.action == "lookup" and rule.table is not None:
            # A table without a match (or a throw route) sends the lookup on to the next rule.
            route = best_route(nr.routes, rule.table, dst)
            if route is not None and route.type != "throw":
                decided = True
                if route.type in REFUSING_TYPES:
                    out.append(f"{route.type} route {route.dst} in table {rule.table}, looked up by {when}")
        if decided and not _conditional(rule):
            break  # the kernel never consults the rules after this one
    return out


def _conditional(rule: Rule) -> bool:
    return bool(rule.fwmark or rule.iif or rule.oif)


def _rp_setting(nr: NetnsRoutes, device: str) -> int:
    """The effective rp_filter of a device: the larger of its own and "all"."""
    values = dict(nr.rp_filter)
    return max(values.get(device, 0), values.get("all", 0))


def candidates(ctx: Context, out: Candidates) -> None:
    """None: configuration types the drops other kinds placed (merge)."""


def merge(ctx: Context, out: Candidates) -> None:
    flows = ctx.bundle.probe
    by_ns = {r.netns_inode: r for r in ctx.bundle.routes}
    if flows is None or not by_ns:
        return
    ends = {"forward": (flows.client, flows.server), "reverse": (flows.server, flows.client)}
    for key in [k for k in out if k[0] in by_ns and k[1] is not None]:
        c = out.get(key)
        if c is None:
            continue
        nr = by_ns[c.netns]
        directions = [d for d in ends if c.directions.get(d)] or list(ends)
        if c.cause == "drop" and (is_generic(c.reason) or cause_of_reason(c.reason) == "no-route"):
            found = [(d, why) for d in directions for why in refusals(nr, *ends[d])]
            if not found:
                continue
            target = out.at(c.netns, c.device, "no-route")
            target.absorb(out.pop(key))
            out.merge((c.netns, c.device, "no-route"), (c.netns, None, "no-route"))
            for d, why in found:
                src, dst = ends[d]
                target.add(name, c.count, source, f"{why} in {ctx.name(c.netns)}: it refuses {src} -> {dst}")
        elif c.cause == "rp-filter":
            for d in directions:
                src, _dst = ends[d]
                back = best_route(nr.routes, "main", src)
                mode = _rp_setting(nr, c.device)
                if back is None or mode == 0:
                    continue
                devs = {back.dev, *back.nexthop_devs} - {None}
                if c.device in devs:
                    continue
                via = f" via {back.gateway}" if back.gateway else ""
                c.add(name, c.count, source, (
                    f"rp_filter {mode} ({'strict' if mode == 1 else 'loose'}) on {c.device} in "
                    f"{ctx.name(c.netns)}; the route back to {src} in table main ({back.dst}) leaves by "
                    f"{', '.join(sorted(devs)) or back.type}{via}, not {c.device} where its packets came in"))
