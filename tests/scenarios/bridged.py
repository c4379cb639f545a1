"""Layer-2 scenarios: a bridge with many tenants, container-style namespaces
held by processes, and a vxlan overlay between two hosts."""

from __future__ import annotations

from scenarios.bed import Bed
from scenarios.case import Case, Expect, Meter, iptables_rule_packets, nft, nft_rule_packets, qdisc_drops

_PORTS = 9


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
    meter = Meter(bed, "n0", "n1", "tcp")
    meter.install()
    return Case(name="bridge-tbf-port", source=bed.nodes["n0"].ref, target=f"{bed.nodes['n1'].ref}:10.78.0.11",
                client="n0", server="n1", probe={"request_bytes": 1000}, meter=meter,
                expect=Expect("sw", frozenset({"p1"}), frozenset({"drop"})),
                fault_counters=lambda: {"tbf_drops": qdisc_drops(bed, "sw", "p1")},
                fault_fired=lambda c: c["tbf_drops"] > 0)


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
    meter = Meter(bed, "k1", "k2", "tcp")
    meter.install()
    return Case(name="container-police", source=bed.nodes["k1"].ref,
                target=f"{bed.nodes['k2'].ref}:10.79.0.12", client="k1", server="k2",
                probe={"request_bytes": 1000}, meter=meter,
                expect=Expect("host", frozenset({"veth-k1"}), frozenset({"drop"})),
                fault_counters=lambda: {"police_drops": nft_rule_packets(bed, "host", "netdev", "police")},
                fault_fired=lambda c: c["police_drops"] > 0)


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
        bed.sh(h, f"ip link add vx0 type vxlan id 42 local 10.80.{i}.2 remote 10.80.{other}.2 dstport 4789 dev ul0",
               "ip link add br0 type bridge", "ip link set vx0 master br0", "ip link set vx0 up", "ip link set br0 up")
    for g, h, addr in (("g1", "h1", 1), ("g3", "h1", 3), ("g2", "h2", 2), ("g4", "h2", 4)):
        bed.veth(h, f"v{g}", g, "eth0")
        bed.sh(h, f"ip link set v{g} master br0")
        bed.sh(g, f"ip addr add 192.168.42.{addr}/24 dev eth0")
    bed.wait_reachable("g3", "192.168.42.4")
    bed.ping("g3", "192.168.42.4", interval_s=0.02)
    bed.udp_flood("g4", "g3", "192.168.42.4", port=5207)
    bed.background("g1", ["ping", "-6", "-q", "-i", "0.3", "ff02::1%eth0"])
    bed.wait_reachable("g1", "192.168.42.2")
    bed.sh("h2", "iptables -w -A INPUT -i ul0 -p udp --dport 4789 -m statistic --mode random --probability 0.03 "
                 "-j DROP")
    meter = Meter(bed, "g1", "g2", "tcp")
    meter.install()
    return Case(name="vxlan-underlay-loss", source=bed.nodes["g1"].ref, target=f"{bed.nodes['g2'].ref}:192.168.42.2",
                client="g1", server="g2", meter=meter,
                expect=Expect("h2", frozenset({"ul0", "vx0"}), frozenset({"drop"})),
                fault_counters=lambda: {"rule": iptables_rule_packets(bed, "h2", "INPUT", "statistic")},
                fault_fired=lambda c: c["rule"] > 0)
