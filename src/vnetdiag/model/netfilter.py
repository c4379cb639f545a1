"""Packet counters of firewall rules: iptables (iptables-save -c) and native
nftables (nft -j list ruleset) alike, one record per rule or counted chain policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["iptables", "iptables-legacy", "nft"]
DROPPING_VERDICTS = ("drop", "reject")


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleCounter:
    netns: str
    """Namespace label, for people (model.namespaces.label)."""
    table: str
    chain: str
    rule: str
    """The rule as its tool shows it, without counter values: iptables-save's
    ``-A``/``-P`` line, or nft's rule text (``iifname "eth0" tcp dport 22 counter drop``)."""
    target: str
    """The verdict in iptables spelling: DROP, REJECT, ACCEPT, a chain for jumps."""
    packets: int
    bytes: int
    in_device: str | None = None
    """-i or --physdev-in: the device whose incoming packets the rule sees."""
    out_device: str | None = None
    """-o or --physdev-out."""
    netns_inode: int = 0
    """The namespace's identity (0 only in records parsed without one)."""
    backend: Backend = "iptables"
    """Where it was read: "iptables" (iptables-save / ip6tables-save, whichever kernel
    backend the iptables command uses), "iptables-legacy" (iptables-legacy-save,
    when the iptables command is the nf_tables one and legacy tables exist too),
    "nft" (native nftables tables, read with nft -j)."""
    family: str = "ip"
    """nftables family: ip, ip6, inet, bridge, arp, netdev (iptables: ip; ip6tables: ip6)."""
    hook: str | None = None
    """Netfilter hook the rule's chain hangs on (prerouting, input, forward, output,
    postrouting, ingress, egress), also for a user chain reached by jumps from
    base chains ("input,forward" when several); None when nothing reaches it."""
    verdict: str = ""
    """nft spelling: drop, reject, accept, jump, goto, return, continue, queue, vmap."""
    handle: int | None = None
    """nft rule handle (``nft -a list chain``); None for iptables rules and policies."""

    @property
    def dropping(self) -> bool:
        """Its counter counts packets it dropped (a drop or reject rule or policy)."""
        return (self.verdict or self.target.lower()) in DROPPING_VERDICTS

    @property
    def where(self) -> str:
        """For people: ``iptables -t filter INPUT`` or ``nft inet fw input (handle 9)``."""
        if self.backend == "nft":
            return f"nft {self.family} {self.table} {self.chain}" + (
                f" (handle {self.handle})" if self.handle is not None else "")
        tool = {"ip6": "ip6tables"}.get(self.family, "iptables")
        return f"{tool}{'-legacy' if self.backend == 'iptables-legacy' else ''} -t {self.table} {self.chain}"

    @property
    def list_argv(self) -> tuple[str, ...]:
        """The command that shows this rule's counter (run it in the rule's namespace)."""
        if self.backend == "nft":
            return ("nft", "-a", "list", "chain", self.family, self.table, self.chain)
        tool = {"ip6": "ip6tables"}.get(self.family, "iptables")
        tool += "-legacy" if self.backend == "iptables-legacy" else ""
        return (tool, "-t", self.table, "-L", self.chain, "-v", "-n", "-x")

    @property
    def key(self) -> tuple:
        return (self.netns_inode, self.netns, self.backend, self.family, self.table, self.chain, self.handle,
                self.rule)


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleTrace:
    """A rule (or chain policy) that netfilter's own packet tracing (``meta
    nftrace``, ``nft monitor trace``) saw give the probe's packets a dropping
    verdict: the kernel names the rule, so no counter is needed."""

    netns_inode: int
    family: str
    table: str
    chain: str
    rule: str
    """nft's text of the rule without counter values; "policy drop" for a chain's policy."""
    handle: int | None
    verdict: str
    """drop (a reject is a drop that answers)."""
    forward: int = 0
    """The probe's packets towards the server it dropped."""
    reverse: int = 0
    """The probe's packets back from the server it dropped."""
