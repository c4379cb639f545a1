"""Packet counters of firewall rules that drop (iptables DROP/REJECT rules)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleCounter:
    netns: str
    """Namespace label (name, or inode when unnamed)."""
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

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.netns, self.table, self.chain, self.rule)
