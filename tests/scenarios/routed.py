"""Routed scenarios: chains of routers, a diamond, ECMP, each with other
tenants' traffic across the same routers and one fault a real network has."""

from __future__ import annotations

from scenarios.bed import Bed
from scenarios.case import Case, Expect, Meter, iptables_rule_packets, link_stats, nft, nft_rule_packets, nstat
from scenarios.net import Net


def _noise(bed: Bed, net: Net, src: str, dst: str, *, udp_port: int = 5201) -> None:
    """Another tenant across the same routers: pings, a low-rate UDP stream, and
    IPv6 multicast (neighbour discovery, MLD, echo to all nodes) on a link."""
    bed.wait_reachable(src, net.address(dst))
    bed.ping(src, net.address(dst))
    bed.udp_flood(dst, src, net.address(dst), port=udp_port)
    first = net.neighbours(src)[0]
    bed.background(src, ["ping", "-6", "-q", "-i", "0.3", f"ff02::1%to-{first}"])


def _chain(bed: Bed, net_id: int, *, mid_mtu: int | None = None, v6: bool = False) -> Net:
    """c - r1 - r2 - r3 - s, with tenants t1 (on r1) and t2 (on r3)."""
    net = Net.build(bed, net_id, [("c", "r1"), ("r1", "r2"), ("r2", "r3"), ("r3", "s"), ("t1", "r1"), ("r3", "t2")],
                    mtus={("r1", "r2"): mid_mtu}, v6=v6)
    bed.wait_reachable("c", net.address("s"))
    if v6:
        bed.wait_reachable("c", net.address("s", v6=True))
    return net


def _case(bed: Bed, net: Net, name: str, expect: Expect | None, *, proto: str = "tcp", client: str = "c",
          server: str = "s", v6: bool = False, **kw) -> Case:
    meter = Meter(bed, client, server, proto)
    meter.install()
    # Over IPv6 both ends are given with their addresses (diagnose would pick IPv4 first).
    source = f"{bed.nodes[client].ref}:{net.address(client, v6=True)}" if v6 else bed.nodes[client].ref
    return Case(name=name, source=source, target=f"{bed.nodes[server].ref}:{net.address(server, v6=v6)}",
                client=client, server=server, expect=expect, meter=meter, **kw)


def chain_iptables_statistic(bed: Bed) -> Case:
    """3 % random loss from an iptables statistic rule in the middle router's FORWARD chain."""
    net = _chain(bed, 71)
    _noise(bed, net, "t1", "t2")
    bed.sh("r2", "iptables -w -A FORWARD -i to-r1 -m statistic --mode random --probability 0.03 -j DROP")
    return _case(bed, net, "chain-iptables-statistic", Expect("r2", frozenset({"to-r1"}), frozenset({"drop"})),
                 fault_counters=lambda: {"rule": iptables_rule_packets(bed, "r2", "FORWARD", "statistic")},
                 fault_fired=lambda c: c["rule"] > 0)


def ipv6_chain_nft_prerouting(bed: Bed) -> Case:
    """The probe over IPv6 on a dual-stack chain: a native nftables ip6 rule (with
    a counter) in r3's prerouting drops 3 % of what arrives from r2; the tenants
    talk IPv4 and IPv6 across the same routers."""
    net = _chain(bed, 78, v6=True)
    _noise(bed, net, "t1", "t2")
    bed.ping("t1", net.address("t2", v6=True))
    nft(bed, "r3", 'table ip6 edge {\n chain pre { type filter hook prerouting priority -150; policy accept;\n'
                   '  iifname "to-r2" numgen random mod 100 < 3 counter drop\n }\n}\n')
    return _case(bed, net, "ipv6-chain-nft-prerouting", Expect("r3", frozenset({"to-r2"}), frozenset({"drop"})),
                 v6=True, fault_counters=lambda: {"rule": nft_rule_packets(bed, "r3", "ip6", "edge")},
                 fault_fired=lambda c: c["rule"] > 0)


def chain_nft_numgen_both_ways(bed: Bed) -> Case:
    """A native nftables rule (no counter, as often written) dropping 3 % of
    everything the middle router forwards, both directions."""
    net = _chain(bed, 72)
    _noise(bed, net, "t1", "t2")
    nft(bed, "r2", "table inet fw {\n chain forward { type filter hook forward priority 0; policy accept;\n"
                   "  numgen random mod 100 < 3 drop\n }\n}\n")

    def counters():
        # The rule keeps no counter: the kernel's count is the forwarded traffic
        # the router lost, in and out of its two devices on the path.
        a, b = link_stats(bed, "r2", "to-r1"), link_stats(bed, "r2", "to-r3")
        return {"in": a["rx"]["packets"] + b["rx"]["packets"], "out": a["tx"]["packets"] + b["tx"]["packets"]}

    return _case(bed, net, "chain-nft-numgen-both-ways",
                 Expect("r2", frozenset({None, "to-r1", "to-r3"}), frozenset({"drop"})),
                 fault_counters=counters, fault_fired=lambda c: c["in"] > c["out"])


def rp_filter_asymmetric(bed: Bed) -> Case:
    """A diamond with the way back through the other side: strict reverse-path
    filtering on the far router drops everything the client sends."""
    net = Net.build(bed, 73, [("c", "r1"), ("r1", "r2"), ("r1", "r3"), ("r2", "r4"), ("r3", "r4"), ("r4", "s"),
                              ("t1", "r2")])
    # There via r2, back via r3: r4 receives the client's packets on to-r2 but
    # would answer them through to-r3.
    net.route("r1", net.subnet_of("r4", "s"), via="r2")
    net.route("r4", net.subnet_of("c", "r1"), via="r3")
    net.route("r2", net.subnet_of("c", "r1"), via="r1")
    bed.wait_reachable("t1", net.address("s"))
    _noise(bed, net, "t1", "s", udp_port=5202)
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.to-r2.rp_filter"):
        bed.sysctl("r4", key, 1)
    return _case(bed, net, "rp-filter-asymmetric", Expect("r4", frozenset({"to-r2"}), frozenset({"rp-filter"})),
                 fault_counters=lambda: nstat(bed, "r4", "TcpExtIPReversePathFilter"),
                 fault_fired=lambda c: c.get("TcpExtIPReversePathFilter", 0) > 0)


def mtu_black_hole(bed: Bed) -> Case:
    """MTU 1400 on the link between r1 and r2 and frag-needed filtered at r1:
    1450-byte UDP requests (DF set) vanish."""
    net = _chain(bed, 74, mid_mtu=1400)
    _noise(bed, net, "t1", "t2")
    bed.sh("r1", "iptables -w -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP")
    return _case(bed, net, "mtu-black-hole", Expect("r1", frozenset({"to-r2"}), frozenset({"mtu-mismatch"})),
                 proto="udp", probe={"pattern": "udp-rr", "request_bytes": 1450},
                 fault_counters=lambda: {**nstat(bed, "r1", "IpFragFails"),
                                         "icmp_rule": iptables_rule_packets(bed, "r1", "OUTPUT", "icmp")},
                 fault_fired=lambda c: c.get("IpFragFails", 0) > 0 and c["icmp_rule"] > 0)


def policy_route_unreachable(bed: Bed) -> Case:
    """Policy routing on r2: marked packets (a random few of the client's data
    segments, longer than a pure ACK, so no connection fails to open) look up a
    table whose route to the server's subnet is a stale 'unreachable'. A
    forwarding router counts nothing but the ICMP it sends (rate-limited)."""
    net = _chain(bed, 75)
    _noise(bed, net, "t1", "t2")
    s_net = net.subnet_of("r3", "s")
    bed.sh("r2", f"ip route add unreachable 10.75.{s_net}.0/24 table 107",
           "ip rule add fwmark 0x7 lookup 107 priority 100",
           "iptables -w -t mangle -A PREROUTING -i to-r1 -p tcp -m length ! --length 0:52 -m statistic --mode random --probability 0.04 "
           "-j MARK --set-mark 0x7")
    return _case(bed, net, "policy-route-unreachable",
                 Expect("r2", frozenset({"to-r1", None}), frozenset({"no-route"})),
                 fault_counters=lambda: {"marked": iptables_rule_packets(bed, "r2", "PREROUTING", "MARK", "mangle"),
                                         **nstat(bed, "r2", "IcmpOutDestUnreachs")},
                 fault_fired=lambda c: c["marked"] > 0)


def ecmp_dead_leg(bed: Bed) -> Case:
    """Two equal-cost ways from r1 to the server; on one the server's interface
    went down. Flows hashed onto it (by their ports) die at r2b's neighbour."""
    net = Net.build(bed, 76, [("c", "r1"), ("r1", "r2a"), ("r1", "r2b"), ("r2a", "s"), ("r2b", "s"), ("t1", "r1")])
    s_net = net.subnet_of("r2a", "s")
    a, b = net.addr[("r2a", "r1")], net.addr[("r2b", "r1")]
    bed.sysctl("r1", "net.ipv4.fib_multipath_hash_policy", 1)
    bed.sh("r1", f"ip route replace 10.76.{s_net}.0/24 nexthop via {a} nexthop via {b}")
    bed.sh("r2b", f"ip route replace 10.76.{s_net}.0/24 via {net.addr[('s', 'r2b')]}")
    bed.sh("s", f"ip route replace 10.76.{net.subnet_of('c', 'r1')}.0/24 via {net.addr[('r2a', 's')]}")
    bed.wait_reachable("c", net.address("s"))
    _noise(bed, net, "t1", "s", udp_port=5203)
    bed.sh("s", "ip link set to-r2b down")
    return _case(bed, net, "ecmp-dead-leg", Expect("r2b", frozenset({"to-s", "to-r1"}), frozenset({"no-neighbour"}),
                                                   exact_count=False),
                 fault_counters=lambda: {"tx_dropped": link_stats(bed, "r2b", "to-s")["tx"]["dropped"]},
                 fault_fired=lambda c: True)


def clean_with_noisy_neighbour(bed: Bed) -> Case:
    """A clean path; another tenant beside it loses half its packets to a rule,
    and fresh links do IPv6 neighbour discovery during the window."""
    net = _chain(bed, 77)
    bed.netns("t3")
    net.link("t3", "t1")
    net.route_all()
    bed.sh("t1", "iptables -w -A FORWARD -m statistic --mode random --probability 0.5 -j DROP")
    bed.sysctl("t1", "net.ipv4.ip_forward", 1)
    bed.wait_reachable("r1", net.address("t1"))
    bed.ping("t3", net.addr[("r1", "t1")], interval_s=0.01)
    bed.ping("t2", net.address("t1"), interval_s=0.02)
    bed.udp_flood("t3", "t2", net.address("t3"), port=5204, rate="500K")
    # Fresh links on the path's routers: DAD, router solicitations, MLD reports.
    for i, router in enumerate(("r1", "r2", "r3")):
        bed.netns(f"x{i}")
        net.link(router, f"x{i}")
    return _case(bed, net, "clean-with-noisy-neighbour", None,
                 fault_counters=lambda: {"tenant_rule": iptables_rule_packets(bed, "t1", "FORWARD", "statistic")},
                 fault_fired=lambda c: c["tenant_rule"] > 20)

