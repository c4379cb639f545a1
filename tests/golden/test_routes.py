"""Routing configuration read from recorded `ip -j` output (tests/golden/routes/:
a namespace with a policy rule to a table with an unreachable route, a
blackhole, a prohibit inside a unicast prefix, a multipath route, an IPv6
unreachable and rp_filter on), and the refusals found in it checked against
what the kernel's own `ip route get` answered for the same destinations
(route-get.txt)."""

from __future__ import annotations

import json
from pathlib import Path

from vnetdiag.analyze.evidence.routes import best_route, refusals
from vnetdiag.collect.routes import parse_routes, parse_rp_filter, parse_rules
from vnetdiag.model.routes import NetnsRoutes

HERE = Path(__file__).parent / "routes"


def _recorded() -> NetnsRoutes:
    load = lambda name: json.loads((HERE / name).read_text())  # noqa: E731
    return NetnsRoutes(netns_inode=1,
                       routes=tuple(parse_routes(load("route4.json"), 4) + parse_routes(load("route6.json"), 6)),
                       rules=tuple(parse_rules(load("rule4.json"), 4) + parse_rules(load("rule6.json"), 6)),
                       rp_filter=tuple(parse_rp_filter((HERE / "rp_filter.txt").read_text())))


def _kernel_answers() -> dict[str, str]:
    text = (HERE / "route-get.txt").read_text()
    out, key = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            key = line[3:].split()[0]
        elif key and key not in out:
            out[key] = line.strip()
    return out


def test_the_recorded_configuration_parses():
    nr = _recorded()
    rules = {r.priority: r for r in nr.rules if r.family == 4}
    assert sorted(rules) == [0, 100, 200, 32766, 32767]
    assert (rules[100].fwmark, rules[100].table, rules[100].action) == ("0x7", "107", "lookup")
    assert (rules[200].action, rules[200].src, rules[200].iif) == ("prohibit", "10.9.0.0/16", "a0")
    assert rules[200].selector == "from 10.9.0.0/16 iif a0"
    types = {(r.table, r.dst): r.type for r in nr.routes}
    assert types[("107", "10.75.3.0/24")] == "unreachable" and types[("main", "10.66.0.0/16")] == "blackhole"
    assert types[("main", "fd00:77::/64")] == "unreachable"
    assert dict(nr.rp_filter)["all"] == 1


def test_refusals_agree_with_the_kernels_route_get():
    nr = _recorded()
    kernel = _kernel_answers()
    # ip route get 10.75.3.2 mark 7: "No route to host" (unreachable) via the fwmark rule.
    assert "No route to host" in kernel["10.75.3.2"]
    assert refusals(nr, "10.1.1.1", "10.75.3.2") == [
        "unreachable route 10.75.3.0/24 in table 107, looked up by rule 100 (from all fwmark 0x7)"]
    assert "Invalid argument" in kernel["10.66.1.1"]  # a blackhole route
    assert refusals(nr, "10.1.1.1", "10.66.1.1") == [
        "blackhole route 10.66.0.0/16 in table main, looked up by rule 32766 (from all)"]
    assert "Permission denied" in kernel["10.70.9.1"]  # prohibit: the longest match inside 10.70.0.0/16
    assert refusals(nr, "10.1.1.1", "10.70.9.1")[0].startswith("prohibit route 10.70.9.0/24 in table main")
    assert kernel["10.70.1.1"].startswith("10.70.1.1 via 10.6.0.2 dev b0")
    assert refusals(nr, "10.1.1.1", "10.70.1.1") == []


def test_a_conditional_rule_is_reported_and_the_lookup_goes_on():
    nr = _recorded()
    # From 10.9/16 arriving on a0 is prohibited; the addresses alone cannot tell the input device.
    assert refusals(nr, "10.9.1.1", "10.70.1.1") == ["rule 200 (from 10.9.0.0/16 iif a0) is prohibit"]
    assert refusals(nr, "10.9.1.1", "10.70.9.1") == ["rule 200 (from 10.9.0.0/16 iif a0) is prohibit",
                                                     "prohibit route 10.70.9.0/24 in table main, looked up by "
                                                     "rule 32766 (from all)"]
    assert refusals(nr, "fd00:1::1", "fd00:77::5") == [
        "unreachable route fd00:77::/64 in table main, looked up by rule 32766 (from all)"]


def test_longest_prefix_match_and_multipath_devices():
    nr = _recorded()
    assert best_route(nr.routes, "main", "10.70.9.200").type == "prohibit"
    assert best_route(nr.routes, "main", "10.70.10.1").gateway == "10.6.0.2"
    assert set(best_route(nr.routes, "main", "10.80.1.1").nexthop_devs) == {"a0", "b0"}
    assert best_route(nr.routes, "main", "192.0.2.1") is None
