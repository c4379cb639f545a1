"""Read the counters of dropping firewall rules in every namespace.

A DROP rule counts exactly the packets it drops and names the device it
matches (-i/-o, --physdev-in/--physdev-out), so it places a loss precisely
where a traced NETFILTER_DROP can only guess. Read with ``iptables-save -c``
entered into each namespace (iptables-nft and legacy alike); rules written in
native nft syntax are not read here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable

from vnetdiag.model.netfilter import RuleCounter
from vnetdiag.model.namespaces import Namespace

_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_DROPPING = ("DROP", "REJECT")


def parse_save(text: str, netns: str, netns_inode: int = 0) -> list[RuleCounter]:
    """Dropping rules with their counters from ``iptables-save -c`` output."""
    out: list[RuleCounter] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        m = _RULE.match(line)
        if not m:
            continue
        packets, nbytes, chain, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        opts: dict[str, str] = {}
        for i, w in enumerate(words[:-1]):
            if w in ("-i", "-o", "--physdev-in", "--physdev-out", "-j"):
                opts[w] = words[i + 1]
        target = opts.get("-j", "")
        if target not in _DROPPING:
            continue
        out.append(RuleCounter(netns=netns, netns_inode=netns_inode, table=table, chain=chain, rule=rest, target=target, packets=packets,
                               bytes=nbytes, in_device=opts.get("--physdev-in") or opts.get("-i"),
                               out_device=opts.get("--physdev-out") or opts.get("-o")))
    return out


def read_drop_rules(namespaces: Iterable[Namespace]) -> tuple[list[RuleCounter], list[str]]:
    """Dropping rules of every namespace, and what could not be read."""
    if shutil.which("iptables-save") is None or shutil.which("nsenter") is None:
        return [], ["firewall rule counters not read: iptables-save or nsenter is not installed"]
    rules: list[RuleCounter] = []
    problems: list[str] = []
    for ns in namespaces:
        label = ns.label
        try:
            r = subprocess.run(["nsenter", f"--net={ns.path}", "iptables-save", "-c"], capture_output=True,
                               text=True, timeout=10)
        except subprocess.TimeoutExpired:
            problems.append(f"firewall rules of {label}: iptables-save timed out")
            continue
        if r.returncode != 0:
            problems.append(f"firewall rules of {label}: {r.stderr.strip() or 'iptables-save failed'}")
            continue
        rules += parse_save(r.stdout, label, ns.inode)
    return rules, problems


def rule_deltas(before: Iterable[RuleCounter], after: Iterable[RuleCounter]) -> list[tuple[RuleCounter, int]]:
    """Rules whose packet counter grew (a rule that is new counts from zero)."""
    old = {r.key: r.packets for r in before}
    out = []
    for r in after:
        d = r.packets - old.get(r.key, 0)
        if d > 0:
            out.append((r, d))
    return out
