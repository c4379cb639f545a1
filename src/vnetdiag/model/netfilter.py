"""Packet counters of firewall rules that drop (iptables DROP/REJECT rules)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleCounter:
    netns: str
    """Namespace label, for people (model.namespaces.label)."""
    table: str
    chain: str
    rule: str
    """The rule as iptables-save prints it, without its counters."""
    target: str
    """DROP or REJECT."""
    packets: int
    bytes: int
    in_device: str | None = None
    """-i or --physdev-in: the device whose incoming packets the rule sees."""
    out_device: str | None = None
    """-o or --physdev-out."""
    netns_inode: int = 0
    """The namespace's identity (0 only in records parsed without one)."""

    @property
    def key(self) -> tuple[int, str, str, str, str]:
        return (self.netns_inode, self.netns, self.table, self.chain, self.rule)
