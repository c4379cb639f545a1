"""iptables-save -c text recorded from the lab (tests/golden/netfilter/*.save)."""

from pathlib import Path

from vnetdiag.collect.netfilter import parse_save, rule_deltas

HERE = Path(__file__).parent / "netfilter"


def test_physdev_rule_names_the_bridge_port_and_its_count():
    [rule] = parse_save((HERE / "fabric-physdev-loss.save").read_text(), "vnx-fabric")
    assert (rule.table, rule.chain, rule.target) == ("raw", "PREROUTING", "DROP")
    assert (rule.in_device, rule.out_device) == ("hv2-p", None)
    assert (rule.packets, rule.bytes) == (4, 480)


def test_routed_out_rule_names_the_egress_device():
    [rule] = parse_save((HERE / "guest-out-loss.save").read_text(), "vnx-vm3")
    assert (rule.table, rule.chain, rule.out_device, rule.in_device) == ("mangle", "POSTROUTING", "eth0", None)
    assert rule.packets == 12


def test_only_dropping_rules_are_kept():
    rules = parse_save((HERE / "hv1-security-group.save").read_text(), "vnx-hv1")
    # The security group has ACCEPT rules and one INVALID DROP; only the DROP is a loss counter.
    assert [(r.chain, r.target, r.in_device) for r in rules] == [("VND-SG", "DROP", None)]


def test_deltas_count_growth_and_new_rules():
    before = parse_save((HERE / "fabric-physdev-loss.save").read_text(), "x")
    after_text = (HERE / "fabric-physdev-loss.save").read_text().replace("[4:480]", "[9:1080]")
    [(rule, d)] = rule_deltas(before, parse_save(after_text, "x"))
    assert d == 5 and rule.in_device == "hv2-p"
    assert [d for _, d in rule_deltas([], before)] == [4]
