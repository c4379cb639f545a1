"""Routed networks of namespaces, addressed and routed with plain `ip` commands.

A network is a list of links between nodes; each link is a /24 of its own
(10.<net>.<link>.0/24, the left end .1, the right end .2) with devices named
after the node on the other side ("to-r2"). Every node gets a route to every
subnet it is not on, via the neighbour on the shortest way there, unless the
scenario routes it by hand. IPv6 stays on: every link does neighbour discovery.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from scenarios.bed import Bed


@dataclass
class Net:
    bed: Bed
    net: int
    """The second octet of every subnet: scenarios use different ones."""
    links: list[tuple[str, str, int]] = field(default_factory=list)
    addr: dict[tuple[str, str], str] = field(default_factory=dict)
    """(node, peer) -> this node's address on the link to peer."""
    v6: bool = False
    """Dual stack: every link also gets fd00:<net>:<link>::1 and ::2 (/64), routed alike."""
    addr6: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def build(cls, bed: Bed, net: int, links: list[tuple[str, str]], *, mtus: dict | None = None,
              v6: bool = False) -> Net:
        """Namespaces for every node of ``links`` (in order), the links, and the routes."""
        for node in dict.fromkeys(x for pair in links for x in pair):
            bed.netns(node)
        self = cls(bed, net, v6=v6)
        for a, b in links:
            self.link(a, b, mtu=(mtus or {}).get((a, b)))
        self.route_all()
        return self

    def link(self, a: str, b: str, *, mtu: int | None = None) -> None:
        n = len(self.links)
        self.bed.veth(a, f"to-{b}", b, f"to-{a}", mtu=mtu)
        self.links.append((a, b, n))
        for node, peer, host in ((a, b, 1), (b, a, 2)):
            address = f"10.{self.net}.{n}.{host}"
            self.addr[(node, peer)] = address
            self.bed.sh(node, f"ip addr add {address}/24 dev to-{peer}")
            if self.v6:
                # nodad: usable at once (duplicate detection would hold it tentative for a second).
                self.addr6[(node, peer)] = address6 = f"fd00:{self.net}:{n}::{host}"
                self.bed.sh(node, f"ip -6 addr add {address6}/64 dev to-{peer} nodad")

    def address(self, node: str, *, v6: bool = False) -> str:
        """The node's first address (an endpoint has one link)."""
        return next(v for (n, _p), v in (self.addr6 if v6 else self.addr).items() if n == node)

    def neighbours(self, node: str) -> list[str]:
        return [b if a == node else a for a, b, _ in self.links if node in (a, b)]

    def next_hop(self, node: str, goal: str) -> str:
        """The neighbour of ``node`` on a shortest way to ``goal``."""
        first: dict[str, str] = {}
        todo = deque()
        for nb in self.neighbours(node):
            first[nb] = nb
            todo.append(nb)
        while todo:
            here = todo.popleft()
            if here == goal:
                return first[here]
            for nb in self.neighbours(here):
                if nb not in first and nb != node:
                    first[nb] = first[here]
                    todo.append(nb)
        raise KeyError(f"no way from {node} to {goal}")

    def route_all(self, skip: set[tuple[str, int]] = frozenset()) -> None:
        """Routes for every (node, subnet) not in ``skip``; routers forward."""
        nodes = {x for a, b, _ in self.links for x in (a, b)}
        for node in sorted(nodes):
            if len(self.neighbours(node)) > 1:
                self.bed.sysctl(node, "net.ipv4.ip_forward", 1)
                if self.v6:
                    self.bed.sysctl(node, "net.ipv6.conf.all.forwarding", 1)
            for a, b, n in self.links:
                if node in (a, b) or (node, n) in skip:
                    continue
                self.route(node, n, via=self.next_hop(node, a if self._dist(node, a) <= self._dist(node, b) else b))

    def route(self, node: str, subnet: int, *, via: str) -> None:
        self.bed.sh(node, f"ip route replace 10.{self.net}.{subnet}.0/24 via {self.addr[(via, node)]}")
        if self.v6:
            self.bed.sh(node, f"ip -6 route replace fd00:{self.net}:{subnet}::/64 via {self.addr6[(via, node)]}")

    def subnet_of(self, a: str, b: str) -> int:
        return next(n for x, y, n in self.links if {x, y} == {a, b})

    def _dist(self, a: str, b: str) -> int:
        seen, todo = {a: 0}, deque([a])
        while todo:
            here = todo.popleft()
            for nb in self.neighbours(here):
                if nb not in seen:
                    seen[nb] = seen[here] + 1
                    todo.append(nb)
        return seen.get(b, 1 << 30)
