"""Network namespaces and references to interfaces inside them."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal


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
        return label(self)


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class IfRef:
    """An interface's identity: (namespace inode, ifindex). The name is a label."""

    netns_inode: int
    ifindex: int

    @property
    def id(self) -> str:
        return f"{self.netns_inode}:{self.ifindex}"


# -- naming a namespace: every form a user gives, parsed without touching the system

NsForm = Literal["host", "name", "glob", "inode", "pid", "path", "number"]

FORMS_HELP = ("an 'ip netns' name or glob, 'host', an inode or netns:INODE, pid:PID (or a bare PID), "
              "or a path such as /proc/PID/ns/net")
"""The one sentence that lists the accepted forms (errors and --help use it)."""

NSFS_FIRST_INODE = 0xF0000000
"""nsfs inodes are allocated from here up (proc_alloc_inum's base), far above any
PID (pid_max is at most 2^22), which is what lets a bare number be told apart."""

_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, kw_only=True, slots=True)
class NsSpec:
    """A namespace as a user named it, parsed but not yet looked up."""

    form: NsForm
    """'number': a bare number, an inode if it is in nsfs's range, else a PID."""
    text: str
    """What the user typed, for messages."""
    value: str | int


def parse_spec(text: str) -> NsSpec:
    """Parse one namespace name in any accepted form; ValueError says what is wrong."""
    # A label copied from vnetdiag's own output, "pid:PID (comm)", names its PID.
    t = re.sub(r"^(pid:\d+) ?\(.*\)$", r"\1", text.strip())
    if not t:
        raise ValueError(f"empty namespace name (give {FORMS_HELP})")
    if t in ("host", "init"):
        return NsSpec(form="host", text=t, value=t)
    for prefix, form in (("netns:", "inode"), ("pid:", "pid")):
        if t.startswith(prefix) and not _GLOB.search(t):
            rest = t[len(prefix):]
            if not rest.isdigit() or int(rest) == 0:
                raise ValueError(f"{t!r}: {prefix} must be followed by a number, e.g. {prefix}{'4026532317' if form == 'inode' else '1234'}")
            return NsSpec(form=form, text=t, value=int(rest))  # type: ignore[arg-type]
    if t.startswith("/") or t.startswith("./"):
        return NsSpec(form="path", text=t, value=t)
    if t.isdigit():
        return NsSpec(form="number", text=t, value=int(t))
    if _GLOB.search(t):
        return NsSpec(form="glob", text=t, value=t)
    return NsSpec(form="name", text=t, value=t)


def matches(spec: NsSpec, ns: Namespace, *, path_inode: int | None = None, pid_inode: int | None = None) -> bool:
    """Whether ``ns`` is (one of) what ``spec`` names. The caller looks up, for the
    forms that need the system, the inode a path or a PID leads to."""
    if spec.form == "host":
        return ns.is_host
    if spec.form == "name":
        return ns.name == spec.value or (spec.value == "host" and ns.is_host)
    if spec.form == "glob":
        return fnmatch.fnmatchcase(ns.name or "", str(spec.value)) or fnmatch.fnmatchcase(label(ns), str(spec.value))
    if spec.form == "inode":
        return ns.inode == spec.value
    if spec.form == "number":
        if int(spec.value) >= NSFS_FIRST_INODE:
            return ns.inode == spec.value
        return pid_inode is not None and ns.inode == pid_inode
    if spec.form == "pid":
        return pid_inode is not None and ns.inode == pid_inode
    return path_inode is not None and ns.inode == path_inode


def label(ns: Namespace) -> str:
    """How a namespace is shown to people, everywhere: its name; else a process
    holding it, ``pid:PID(comm)``; else ``netns:INODE``. Never a key: records
    and joins use the inode."""
    if ns.name:
        return ns.name
    if ns.holders:
        h = ns.holders[0]
        return f"pid:{h.pid} ({h.comm})"
    return inode_label(ns.inode)


def inode_label(inode: int) -> str:
    """The label of a namespace known only by its inode (gone, or not enumerated)."""
    return f"netns:{inode}"


def holder_label(ns: Namespace) -> str:
    """A label that survives restarts of the holder better than a PID: the
    holder's command name ('' for named namespaces and the host)."""
    if ns.name or not ns.holders:
        return ""
    return ns.holders[0].comm


def split_endpoint(text: str) -> tuple[str, str | None]:
    """An endpoint "NS" or "NS:ADDRESS", where NS is any namespace form
    (``pid:PID:10.0.0.2``, ``netns:INODE:fd00::2``) and the address may be IPv6.
    The older "NS@ADDRESS" is accepted too. ValueError when an address is malformed."""
    t = text.strip()
    if "@" in t:
        ns, _, addr = t.partition("@")
        return ns, _check_address(addr, text)
    m = re.fullmatch(r"((?:pid|netns):\d+)(?::(.*))?", t)
    if m:
        return m.group(1), _check_address(m.group(2), text) if m.group(2) is not None else None
    ns, sep, rest = t.partition(":")
    if not sep:
        return t, None
    return ns, _check_address(rest, text)


def _check_address(addr: str, text: str) -> str:
    """The address in its canonical form ("fd00:78:0::1" is "fd00:78::1"): what
    the kernel reports, so the path walk and flow matching compare equal."""
    try:
        return str(ipaddress.ip_address(addr.strip("[]")))
    except ValueError:
        raise ValueError(f"{addr!r} in {text!r} is not an IP address (write NAMESPACE or NAMESPACE:ADDRESS)") from None
