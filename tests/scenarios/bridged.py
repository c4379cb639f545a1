"""Layer-2 scenarios: a bridge with many tenants, container-style namespaces
held by processes, and a vxlan overlay between two hosts."""

from __future__ import annotations

from scenarios.bed import Bed
from scenarios.case import (Case, Expect, Meter, iptables_rule_packets, link_stats, nft, nft_rule_packets,
                            qdisc_drops)

_PORTS = 9


def _case(bed: Bed, name: str, client: str, server: str, address: str, expect: Expect, counters, fired,
          **probe) -> Case:
    """The meter at both ends, and the case handed to the test."""
    meter = Meter(bed, client, server, "tcp")
    meter.install()
    return Case(name=name, source=bed.nodes[client].ref, target=f"{bed.nodes[server].ref}:{address}",
                client=client, server=server, probe=probe, meter=meter, expect=expect,
                fault_counters=counters, fault_fired=fired)


def _iptables_fault(bed: Bed, name: str, node: str, chain: str, rule: str, match: str, ends: tuple[str, str, str],
                    expect: Expect) -> Case:
    """One iptables rule in ``node``'s ``chain`` is the fault; its counter (the
    lines containing ``match``) is the kernel's word that it fired."""
    bed.wait_reachable(ends[0], ends[2])
    bed.sh(node, f"iptables -w -A {chain} {rule} -j DROP")
    return _case(bed, name, *ends, expect, lambda: {"rule": iptables_rule_packets(bed, node, chain, match)},
                 lambda c: c["rule"] > 0)


def bridge_tbf_port(bed: Bed) -> Case:
    """A 9-port bridge (tenants n0..n8, pings and a UDP stream among them); a tbf
    with a tiny limit on the port towards the server overflows on bursts."""
    bed.netns("sw")
    bed.sh("sw", "ip link add br0 type bridge", "ip link set br0 up")
    for i in range(_PORTS):
        bed.netns(f"n{i}")
        bed.veth("sw", f"p{i}", f"n{i}", "eth0")
        bed.sh("sw", f"ip link set p{i} master br0")
        bed.sh(f"n{i}", f"ip addr add 10.78.0.{10 + i}/24 dev eth0")
    bed.wait_reachable("n2", "10.78.0.11")
    bed.ping("n2", "10.78.0.11", interval_s=0.05)  # another client of the server, through the same port
    for i in range(3, _PORTS - 1, 2):  # tenants n3<->n4, n5<->n6, n7<->n8
        bed.wait_reachable(f"n{i}", f"10.78.0.{11 + i}")
        bed.ping(f"n{i}", f"10.78.0.{11 + i}", interval_s=0.02)
    bed.udp_flood("n4", "n5", "10.78.0.14", port=5205)
    bed.background("n6", ["ping", "-6", "-q", "-i", "0.2", "ff02::1%eth0"])
    bed.wait_reachable("n0", "10.78.0.11")
    bed.sh("sw", "tc qdisc add dev p1 root handle 1: tbf rate 2mbit burst 1600 limit 3000")
    return _case(bed, "bridge-tbf-port", "n0", "n1", "10.78.0.11", Expect("sw", frozenset({"p1"}), frozenset({"drop"})),
                 lambda: {"tbf_drops": qdisc_drops(bed, "sw", "p1")}, lambda c: c["tbf_drops"] > 0,
                 request_bytes=1000)


def container_police(bed: Bed) -> Case:
    """Containers (unnamed namespaces held by processes, veths moved by PID) on a
    host bridge; the host polices one container's ingress at 400 packets/s with
    a native nftables netdev-ingress rule (tc police is not in every kernel)."""
    bed.netns("host")
    bed.sh("host", "ip link add cbr0 type bridge", "ip addr add 10.79.0.1/24 dev cbr0", "ip link set cbr0 up")
    for i in (1, 2, 3):
        bed.container(f"k{i}")
        bed.veth("host", f"veth-k{i}", f"k{i}", "eth0")
        bed.sh("host", f"ip link set veth-k{i} master cbr0")
        bed.sh(f"k{i}", f"ip addr add 10.79.0.{10 + i}/24 dev eth0", "ip route add default via 10.79.0.1")
    bed.wait_reachable("k3", "10.79.0.12")
    bed.ping("k3", "10.79.0.12", interval_s=0.02)
    bed.udp_flood("k2", "k3", "10.79.0.12", port=5206)
    bed.wait_reachable("k1", "10.79.0.12")
    bed.ping("k1", "10.79.0.1", interval_s=0.05)  # the container's own other traffic, through the policer
    nft(bed, "host", 'table netdev police {\n chain k1 { type filter hook ingress device "veth-k1" priority 0;\n'
                     '  limit rate over 400/second burst 50 packets counter drop\n }\n}\n')
    return _case(bed, "container-police", "k1", "k2", "10.79.0.12",
                 Expect("host", frozenset({"veth-k1"}), frozenset({"drop"})),
                 lambda: {"police_drops": nft_rule_packets(bed, "host", "netdev", "police")},
                 lambda c: c["police_drops"] > 0, request_bytes=1000)


def bridge_netfilter_physdev(bed: Bed) -> Case:
    """A hypervisor's bridge with bridged traffic sent through iptables
    (br_netfilter, net.bridge.bridge-nf-call-iptables=1 in its namespace, as
    container and VM hosts set it): a FORWARD rule matching one port by physdev
    drops 3 % of what that guest sends."""
    bed.netns("hv")
    bed.sh("hv", "ip link add br0 type bridge", "ip link set br0 up")
    for i in range(4):
        bed.netns(f"g{i}")
        bed.veth("hv", f"vg{i}", f"g{i}", "eth0")
        bed.sh("hv", f"ip link set vg{i} master br0")
        bed.sh(f"g{i}", f"ip addr add 10.81.0.{10 + i}/24 dev eth0")
    bed.sysctl("hv", "net.bridge.bridge-nf-call-iptables", 1)
    # Another guest's stream towards the server, as well as a ping between two others.
    bed.tenants(ping=("g2", "10.81.0.13"), flood=("g1", "g3", "10.81.0.11", 5208), multicast="g0")
    return _iptables_fault(bed, "bridge-netfilter-physdev", "hv", "FORWARD",
                           "-m physdev --physdev-in vg0 --physdev-is-bridged -m statistic --mode random "
                           "--probability 0.03", "physdev", ("g0", "g1", "10.81.0.11"),
                           Expect("hv", frozenset({"vg0", "br0"}), frozenset({"drop"})))


def _overlay_guests(bed: Bed, subnet: str, guests: tuple[tuple[str, str, int], ...]) -> None:
    """Each host's vx0 on a new bridge br0, and guests (name, host, last octet
    in ``subnet``/24) on veths plugged into their host's bridge."""
    for h in sorted({h for _g, h, _a in guests}):
        bed.sh(h, "ip link add br0 type bridge", "ip link set vx0 master br0", "ip link set vx0 up",
               "ip link set br0 up")
    for g, h, addr in guests:
        bed.veth(h, f"v{g}", g, "eth0")
        bed.sh(h, f"ip link set v{g} master br0")
        bed.sh(g, f"ip addr add {subnet}.{addr}/24 dev eth0")


def vxlan_underlay_loss(bed: Bed) -> Case:
    """Two hosts (h1, h2) joined by a routed underlay through a fabric router,
    a vxlan (VNI 42) bridged to guests on each; two tenants share the overlay.
    h2's firewall drops 3 % of the encapsulated packets arriving on its underlay."""
    for node in ("h1", "h2", "fab", "g1", "g2", "g3", "g4"):
        bed.netns(node)
    for i, h in ((1, "h1"), (2, "h2")):
        bed.veth(h, "ul0", "fab", f"to-{h}", mtu=1550)  # a jumbo-ish underlay carries 1500-byte guests
        bed.sh(h, f"ip addr add 10.80.{i}.2/24 dev ul0", f"ip route add 10.80.0.0/16 via 10.80.{i}.1")
        bed.sh("fab", f"ip addr add 10.80.{i}.1/24 dev to-{h}")
    bed.sysctl("fab", "net.ipv4.ip_forward", 1)
    for i, h, other in ((1, "h1", 2), (2, "h2", 1)):
        bed.sh(h, f"ip link add vx0 type vxlan id 42 local 10.80.{i}.2 remote 10.80.{other}.2 dstport 4789 dev ul0")
    _overlay_guests(bed, "192.168.42", (("g1", "h1", 1), ("g3", "h1", 3), ("g2", "h2", 2), ("g4", "h2", 4)))
    bed.tenants(ping=("g3", "192.168.42.4"), flood=("g4", "g3", "192.168.42.4", 5207), multicast="g1")
    return _iptables_fault(bed, "vxlan-underlay-loss", "h2", "INPUT",
                           "-i ul0 -p udp --dport 4789 -m statistic --mode random --probability 0.03", "statistic",
                           ("g1", "g2", "192.168.42.2"), Expect("h2", frozenset({"ul0", "vx0"}), frozenset({"drop"})))


def stalled_port_cold_neighbour(bed: Bed) -> Case:
    """Two hosts bridged over a vxlan with a configured remote on an IPv6
    underlay (VNI 77), two tenants beside the endpoints. h2's port towards the
    server stops sending (htb, one class at 8 bit/s), and the client and server
    have forgotten each other (as on a fresh link): the probe's packets die
    waiting for ARP at the client, the request waiting behind the stalled port."""
    for node in ("h1", "h2", "c", "s", "t1", "t2"):
        bed.netns(node)
    bed.veth("h1", "ul0", "h2", "ul1", mtu=1600)
    for i, h, other in ((1, "h1", 2), (2, "h2", 1)):
        ul = f"ul{i - 1}"
        bed.sh(h, f"ip -6 addr add fd77::{i}/64 dev {ul} nodad",
               f"ip link add vx0 type vxlan id 77 local fd77::{i} remote fd77::{other} dstport 4789 dev {ul}")
    _overlay_guests(bed, "10.77.0", (("c", "h1", 1), ("t1", "h1", 3), ("s", "h2", 2), ("t2", "h2", 4)))
    bed.tenants(ping=("t1", "10.77.0.4"), flood=("t2", "t1", "10.77.0.4", 5209), multicast="t2")
    bed.wait_reachable("c", "10.77.0.2")  # the bridges learn the endpoints' MACs
    bed.sh("h2", "tc qdisc add dev vs root handle 1: htb default 1",
           "tc class add dev vs parent 1: classid 1:1 htb rate 8bit ceil 8bit burst 1 cburst 1")
    bed.sh("c", "ip neigh flush all")
    bed.sh("s", "ip neigh flush all")

    def backlog() -> dict:
        root = next(q for q in bed.json("h2", ["tc", "-s", "-j", "qdisc", "show", "dev", "vs"]) if q.get("root"))
        return {"backlog_packets": root.get("qlen", 0), "tx_packets": link_stats(bed, "h2", "vs")["tx"]["packets"]}

    return _case(bed, "stalled-port-cold-neighbour", "c", "s", "10.77.0.2",
                 Expect("h2", frozenset({"vs"}), frozenset({"tx-stall"}), exact_count=False),
                 backlog, lambda c: c["backlog_packets"] > 0)
