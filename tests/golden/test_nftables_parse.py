"""nftables rulesets recorded on this machine (tests/golden/netfilter/record_nft.py):
``nft -j list ruleset`` parsed into RuleCounter records, checked against nft's own
text output of the same moment; iptables-nft, iptables-legacy and native tables
side by side, each rule counted once."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from vnetdiag.collect import nftables
from vnetdiag.collect.netfilter import combine, rule_deltas

HERE = Path(__file__).parent / "netfilter"
ROUTER_TEXT = (HERE / "nft-router.nft").read_text()
# nft's text leaves out what is its default; the parser spells it out.
NFT_DEFAULTS = {
    "udp dport { 5000, 5001 } counter reject with icmpx port-unreachable": "udp dport { 5000, 5001 } counter reject",
    "limit rate over 5/second burst 5 packets udp dport 5100 counter drop":
        "limit rate over 5/second udp dport 5100 counter drop",
    "udp dport 9400 counter reject with icmpv6 port-unreachable": "udp dport 9400 counter reject",
}


def router():
    objs = nftables.objects((HERE / "nft-router.json").read_text())
    devices = {key: nftables.chain_devices(ROUTER_TEXT) for key in nftables.netdev_chains_without_devices(objs)}
    return nftables.parse_ruleset(objs, "fw", 4026531999, devices=devices)


def text_counters() -> dict[str, tuple[int, int]]:
    """Rule line (counter values taken out) -> (packets, bytes), from nft's text."""
    out = {}
    for line in ROUTER_TEXT.splitlines():
        m = re.search(r"counter packets (\d+) bytes (\d+)", line)
        if m and not line.strip().startswith("packets"):
            out[line.strip().replace(m.group(0), "counter")] = (int(m.group(1)), int(m.group(2)))
    return out


def test_every_counted_rule_has_nfts_own_text_and_counter():
    reading = router()
    texts = text_counters()
    assert len(reading.rules) == 18
    for r in reading.rules:
        line = NFT_DEFAULTS.get(r.rule, r.rule)
        if r.rule == 'tcp dport 7777 counter name "hits" drop':  # the named counter object's values
            assert (r.packets, r.bytes) == (2, 120) and "packets 2 bytes 120" in ROUTER_TEXT
            continue
        assert line in texts, r.rule
        assert (r.packets, r.bytes) == texts[line], r.rule
    assert sum(r.packets for r in reading.rules) == 51  # summed by hand from nft-router.nft


def test_families_hooks_and_verdicts():
    rules = router().rules
    assert {(r.family, r.hook) for r in rules if r.dropping} == {
        ("inet", "input"), ("inet", "forward"), ("inet", "output"), ("ip", "prerouting"), ("ip6", "input"),
        ("bridge", "forward"), ("netdev", "ingress")}
    assert Counter(r.verdict for r in rules) == {"drop": 12, "reject": 5, "accept": 1}
    assert all(r.backend == "nft" and r.handle and r.netns_inode == 4026531999 for r in rules)
    assert all(r.target == r.verdict.upper() for r in rules)
    [accept] = [r for r in rules if not r.dropping]
    assert accept.rule == "tcp dport 8080 counter accept" and accept.packets == 1


def test_a_user_chain_gets_the_hook_of_the_chain_that_jumps_to_it():
    [r] = [r for r in router().rules if r.chain == "fwd_extra"]
    assert (r.hook, r.verdict, r.packets) == ("forward", "drop", 2)
    assert r.rule == 'ip daddr 10.77.2.6 udp dport 9002 counter log prefix "hp-fwd " drop'


def test_devices_from_matches_and_from_the_netdev_chain():
    by_handle = {(r.table, r.handle): r for r in router().rules}
    fwd = by_handle[("fw", 20)]
    assert (fwd.in_device, fwd.out_device, fwd.packets) == ("to-cl", "br0", 5)
    assert by_handle[("fw", 25)].out_device == "to-cl"
    assert (by_handle[("br", 2)].in_device, by_handle[("br", 2)].family) == ("to-b1", "bridge")  # a bridge port
    ingress = next(r for r in router().rules if r.family == "netdev")
    assert (ingress.in_device, ingress.hook, ingress.packets) == ("to-cl", "ingress", 2)


def test_what_cannot_be_counted_is_said_not_guessed():
    reading = router()
    handles = {r.handle for r in reading.rules if r.table == "fw"}
    assert 12 not in handles and 18 not in handles and 17 not in handles
    notes = "\n".join(reading.notes)
    assert "'tcp dport 6666 drop' drops without a counter" in notes
    # 'counter udp dport 5300 drop' counted 14 packets, of which it dropped only 2
    assert "counter of 'counter udp dport 5300 drop' comes before its match" in notes
    assert '"counter":{"packets":14' not in notes and "verdict map (udp dport vmap { 5200 : drop, 5201 : accept })" in notes


def test_chain_devices_from_text():
    assert nftables.chain_devices(ROUTER_TEXT) == ("to-cl",)
    assert nftables.chain_devices('type filter hook ingress devices = { "a0", b0 } priority 0;') == ("a0", "b0")
    assert nftables.chain_devices("type filter hook input priority 0;") == ()


def mixed():
    saves = [("ip", "iptables", (HERE / "nft-mixed.iptables-save").read_text()),
             ("ip6", "iptables", (HERE / "nft-mixed.ip6tables-save").read_text())]
    if "legacy tables present" in (HERE / "nft-mixed.iptables-save.stderr").read_text():
        saves.append(("ip", "iptables-legacy", (HERE / "nft-mixed.iptables-legacy-save").read_text()))
    objs = nftables.objects((HERE / "nft-mixed.json").read_text())
    return objs, combine("mx", 7, nf_tables=True, saves=saves, nft=objs)


def test_iptables_nft_tables_are_in_nfts_ruleset_but_counted_once():
    assert "(nf_tables)" in (HERE / "nft-mixed.iptables-version").read_text()
    objs, (rules, notes) = mixed()
    in_nft = {(o["table"]["family"], o["table"]["name"]) for o in objs if "table" in o}
    assert {("ip", "filter"), ("ip", "mangle"), ("ip6", "filter"), ("inet", "native")} <= in_nft
    got = sorted((r.backend, r.family, r.table, r.chain, r.verdict, r.packets) for r in rules if r.dropping)
    assert got == [
        ("iptables", "ip", "filter", "FORWARD", "drop", 4),  # the policy, counted by iptables-nft only
        ("iptables", "ip", "filter", "INPUT", "drop", 2),
        ("iptables", "ip", "filter", "INPUT", "reject", 3),
        ("iptables", "ip", "mangle", "PREROUTING", "drop", 3),  # every 2nd of 6: an xt statistic match
        ("iptables", "ip6", "filter", "INPUT", "reject", 2),
        ("iptables-legacy", "ip", "filter", "INPUT", "drop", 5),
        ("nft", "inet", "native", "input", "drop", 3),
    ]
    assert not notes
    policy = next(r for r in rules if r.rule == "-P FORWARD DROP")
    assert (policy.hook, policy.bytes, policy.where) == ("forward", 192, "iptables -t filter FORWARD")
    assert policy.list_argv == ("iptables", "-t", "filter", "-L", "FORWARD", "-v", "-n", "-x")


def test_a_native_table_named_like_iptables_is_read_from_nft():
    """iptables-nft-save shows `ip saddr @blocked udp dport 9990 counter drop` as
    `-p udp -m udp --dport 9990 -j DROP`: the set lookup is lost."""
    save = (HERE / "nft-shadow.iptables-save").read_text()
    assert "-A INPUT -p udp -m udp --dport 9990 -j DROP" in save
    objs = nftables.objects((HERE / "nft-shadow.json").read_text())
    rules, notes = combine("sx", 8, nf_tables=True, saves=[("ip", "iptables", save)], nft=objs)
    [r] = rules
    assert (r.backend, r.rule, r.packets, r.hook) == ("nft", "ip saddr @blocked udp dport 9990 counter drop", 3,
                                                      "input")
    assert r.where == f"nft ip filter INPUT (handle {r.handle})"
    assert notes == [("table ip filter in sx is native nftables (it uses sets): read with nft, as iptables-save "
                      "shows it without its set lookups")]


def test_without_nf_tables_iptables_and_nft_are_both_read_whole():
    """With legacy iptables, nft's ruleset holds only native tables: nothing is skipped."""
    objs = nftables.objects((HERE / "nft-router.json").read_text())
    rules, _ = combine("fw", 1, nf_tables=False, saves=[("ip", "iptables", (HERE / "guest-out-loss.save").read_text())],
                       nft=objs)
    assert Counter(r.backend for r in rules) == {"nft": 18, "iptables": 1}


@pytest.mark.parametrize("name", ["nft-router.json", "nft-mixed.json", "nft-shadow.json"])
def test_rule_deltas_tell_rules_apart_across_families_and_handles(name):
    rules = nftables.parse_ruleset(nftables.objects((HERE / name).read_text()), "x").rules
    assert len({r.key for r in rules}) == len(rules)
    grown = [replace(r, packets=r.packets + 1 + i) for i, r in enumerate(rules)]
    assert [d for _, d in rule_deltas(rules, grown)] == [1 + i for i in range(len(rules))]


def test_empty_ruleset():
    assert nftables.objects("") == []
    assert nftables.parse_ruleset(nftables.objects('{"nftables": [{"metainfo": {}}]}'), "x").rules == []


def test_loss_and_reverse_path_rules_read_as_nft_writes_them():
    """numgen (injected random loss) and fib (reverse-path filtering) in nft's own words."""
    rules = nftables.parse_ruleset(nftables.objects((HERE / "nft-loss.json").read_text()), "lx").rules
    text = (HERE / "nft-loss.nft").read_text()
    assert [r.rule for r in rules] == ["fib saddr . iif oif missing counter drop",
                                       "udp dport 9980 numgen random mod 4 0 counter drop"]
    for r in rules:
        assert r.rule.replace("counter", f"counter packets {r.packets} bytes {r.bytes}") in text
        assert (r.hook, r.verdict) == ("prerouting", "drop")
    assert rules[0].packets == 3 and 0 < rules[1].packets < 40  # 3 spoofed; about a quarter of 40
