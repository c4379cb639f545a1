"""Network namespaces and references to interfaces inside them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Holder:
    """A process whose network namespace is the namespace (it 'holds' it)."""

    pid: int
    comm: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Namespace:
    inode: int
    """Inode of the nsfs file: the namespace's identity."""
    name: str | None
    """Name under /run/netns, "host" for PID 1's namespace, None if unnamed."""
    path: str
    """A path that opens it: /run/netns/NAME or /proc/PID/ns/net."""
    holders: tuple[Holder, ...] = ()
    """A few processes living in it (at most 8), so an unnamed one can be found."""
    is_host: bool = False

    @property
    def label(self) -> str:
        return self.name or f"netns:{self.inode}"


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class IfRef:
    """An interface's identity: (namespace inode, ifindex). The name is a label."""

    netns_inode: int
    ifindex: int

    @property
    def id(self) -> str:
        return f"{self.netns_inode}:{self.ifindex}"
