"""Native nftables rules read by vnetdiag on real namespaces: a rule that drops a
TCP port in its own table, traffic sent at it, and vnetdiag's counter equal to
nft's own; an iptables-nft rule beside it is counted once, by iptables-save."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from vnetdiag.collect.netfilter import (
    iptables_backend,
    read_drop_rules,
    read_rules,
    rule_deltas,
)
from vnetdiag.system import netns
from vnetdiag.system.undo import DeleteNetns, Journal

pytestmark = pytest.mark.root

PREFIX = os.environ.get("VNETDIAG_LAB_PREFIX", "vnt")
PORT = 7461
RULESET = f"""
table inet {PREFIX}guard {{
	chain input {{
		type filter hook input priority filter; policy accept;
		iifname "srv0" tcp dport {PORT} counter drop
		udp dport {PORT} counter accept
	}}
}}
"""


def sh(*argv: str, ns: str | None = None, stdin: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    return subprocess.run(full, check=True, capture_output=True, text=True, input=stdin).stdout


@pytest.fixture
def pair():
    """Server and client namespaces joined by a veth pair; undone through a journal."""
    tag = f"{PREFIX}-nft{os.getpid()}"
    server, client = f"{tag}-s", f"{tag}-c"
    journal = Journal(f"test-nftables-{os.getpid()}").open()
    try:
        for ns in (server, client):
            journal.record(DeleteNetns(name=ns))
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "srv0", "netns", server, "type", "veth", "peer", "name", "cli0", "netns", client)
        sh("ip", "addr", "add", "10.91.0.1/30", "dev", "srv0", ns=server)
        sh("ip", "addr", "add", "10.91.0.2/30", "dev", "cli0", ns=client)
        sh("ip", "link", "set", "srv0", "up", ns=server)
        sh("ip", "link", "set", "cli0", "up", ns=client)
        yield server, client
    finally:
        assert not journal.undo()


def namespace_record(name: str):
    return netns.find_one(name)


def nft_counter(ns: str, port: int) -> tuple[int, int]:
    """packets, bytes of the rule matching ``port``, as nft itself reports them."""
    doc = json.loads(sh("nft", "-j", "list", "table", "inet", f"{PREFIX}guard", ns=ns))
    for o in doc["nftables"]:
        rule = o.get("rule")
        if rule and any(e.get("match", {}).get("right") == port for e in rule["expr"]) \
                and any("drop" in e for e in rule["expr"]):
            c = next(e["counter"] for e in rule["expr"] if "counter" in e)
            return c["packets"], c["bytes"]
    raise AssertionError("rule not found")


def syns(client: str, count: int) -> None:
    """``count`` connection attempts, each one SYN (a 0.3 s timeout stops before
    the first retransmission, which comes after 1 s)."""
    code = ("import socket\n"
            f"for _ in range({count}):\n"
            "    s = socket.socket(); s.settimeout(0.3)\n"
            f"    try: s.connect(('10.91.0.1', {PORT}))\n"
            "    except OSError: pass\n"
            "    s.close()\n")
    sh("python3", "-c", code, ns=client)


def wait_for(cond, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_native_drop_rule_counts_what_nft_counts(pair):
    server, client = pair
    sh("nft", "-f", "-", ns=server, stdin=RULESET)
    ns = namespace_record(server)
    before, problems = read_drop_rules([ns])
    assert not problems
    [rule] = [r for r in before if r.backend == "nft"]
    assert (rule.family, rule.table, rule.chain, rule.hook, rule.verdict) == ("inet", f"{PREFIX}guard", "input",
                                                                            "input", "drop")
    assert (rule.in_device, rule.packets, rule.netns_inode) == ("srv0", 0, ns.inode)
    syns(client, 5)
    wait_for(lambda: nft_counter(server, PORT)[0] >= 5)
    after, _ = read_drop_rules([ns])
    [grown] = [r for r in after if r.backend == "nft"]
    assert (grown.packets, grown.bytes) == nft_counter(server, PORT)
    assert grown.packets >= 5  # SYNs only; a slow machine may add a retransmission
    [(r, delta)] = rule_deltas(before, after)
    assert r.key == rule.key and delta == grown.packets
    # the accept rule is read too (read_rules), but it is no drop
    assert any(x.verdict == "accept" for x in read_rules([ns])[0])


def test_an_iptables_rule_is_counted_once_whatever_the_backend(pair):
    server, _ = pair
    sh("nft", "-f", "-", ns=server, stdin=RULESET)
    sh("iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(PORT + 1), "-j", "DROP", ns=server)
    rules, problems = read_drop_rules([namespace_record(server)])
    assert not problems
    ipt = [r for r in rules if r.rule.endswith(f"--dport {PORT + 1} -j DROP") or f"dport {PORT + 1}" in r.rule]
    assert len(ipt) == 1 and ipt[0].backend == "iptables" and ipt[0].family == "ip"
    if iptables_backend() == "nf_tables":  # then the same rule is in nft's ruleset too
        assert "filter" in sh("nft", "list", "tables", ns=server)
    assert sorted(r.backend for r in rules) == ["iptables", "nft"]


def test_no_rules_no_problems(pair):
    server, _ = pair
    assert read_drop_rules([namespace_record(server)]) == ([], [])
