"""Routing configuration of a namespace, as the kernel reports it: routes of
every table, policy rules, reverse-path filter settings. Read after a diagnose
window for the namespaces on the path (collect/routes.py) and kept in the
bundle, so a verdict can say which route or rule refused the probe's packets."""

from __future__ import annotations

from dataclasses import dataclass

REFUSING_TYPES = frozenset({"unreachable", "prohibit", "blackhole"})
"""Route and rule types (rtnetlink's RTN_*/FR_ACT_* as ip names them) that drop what they match."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    family: int
    """4 or 6."""
    table: str
    """As ip names it: "main", "local", "107"."""
    type: str
    """unicast, local, broadcast, unreachable, prohibit, blackhole, throw, ..."""
    dst: str
    """A prefix ("10.75.3.0/24", a host address) or "default"."""
    dev: str | None = None
    gateway: str | None = None
    nexthop_devs: tuple[str, ...] = ()
    """The devices of a multipath route's nexthops."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    family: int
    priority: int
    action: str
    """"lookup" (then ``table``), or the type of a rule that refuses: unreachable, prohibit, blackhole."""
    table: str | None = None
    src: str | None = None
    """Prefix or None for "from all"."""
    dst: str | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: str | None = None

    @property
    def selector(self) -> str:
        """The rule's match as ``ip rule`` prints it."""
        words = [f"from {self.src or 'all'}"]
        words += [f"{k} {v}" for k, v in (("to", self.dst), ("fwmark", self.fwmark), ("iif", self.iif),
                                          ("oif", self.oif)) if v]
        return " ".join(words)


@dataclass(frozen=True, kw_only=True, slots=True)
class NetnsRoutes:
    netns_inode: int
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    rp_filter: tuple[tuple[str, int], ...] = ()
    """(device, or "all"/"default", net.ipv4.conf.*.rp_filter)."""
