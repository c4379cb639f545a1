"""Scenarios built with plain ip/tc/iptables/nft/sysctl/bridge commands (not the
lab), each with background traffic, one fault, and the truth read from the
kernel's own counters. ``SCENARIOS`` is the one registered list."""

from __future__ import annotations

from scenarios.bridged import (bridge_netfilter_physdev, bridge_tbf_port, container_police,
                               stalled_port_cold_neighbour, vxlan_underlay_loss)
from scenarios.routed import (chain_iptables_statistic, chain_nft_numgen_both_ways, clean_with_noisy_neighbour,
                              ecmp_dead_leg, ipv6_chain_nft_prerouting, mtu_black_hole, policy_route_unreachable,
                              rp_filter_asymmetric)

# (name, tag, build): a bed's namespaces are "<run prefix><tag>-<node>", the run
# prefix ("hs" + the test process's pid in base 36) keeping concurrent runs apart
# and the tag keeping the scenarios of one run apart.
SCENARIOS = (
    ("chain-iptables-statistic", "ipt", chain_iptables_statistic),
    ("chain-nft-numgen-both-ways", "nft", chain_nft_numgen_both_ways),
    ("ipv6-chain-nft-prerouting", "v6", ipv6_chain_nft_prerouting),
    ("rp-filter-asymmetric", "rpf", rp_filter_asymmetric),
    ("mtu-black-hole", "mtu", mtu_black_hole),
    ("policy-route-unreachable", "pbr", policy_route_unreachable),
    ("ecmp-dead-leg", "ecmp", ecmp_dead_leg),
    ("bridge-tbf-port", "br", bridge_tbf_port),
    ("bridge-netfilter-physdev", "brnf", bridge_netfilter_physdev),
    ("container-police", "ctr", container_police),
    ("vxlan-underlay-loss", "vx", vxlan_underlay_loss),
    ("stalled-port-cold-neighbour", "stall", stalled_port_cold_neighbour),
    ("clean-with-noisy-neighbour", "clean", clean_with_noisy_neighbour),
)
