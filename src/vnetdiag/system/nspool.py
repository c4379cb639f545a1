"""Every network namespace on the host, and one open handle per namespace.

Enumeration: named namespaces (/run/netns) and unnamed ones found through
/proc/*/ns/net, de-duplicated by inode; the host is PID 1's namespace.

A ``NetlinkPool`` keeps, per namespace, an rtnetlink socket and the /proc/net
files opened from inside it, so repeated snapshots cost no setns() and no
open(). Open sockets and files hold a reference on their namespace, which
would keep a deleted namespace (and its veth ends) alive; so every
``refresh()`` re-enumerates and closes the handles of namespaces that are
gone from /run/netns and from every process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vnetdiag.errors import VnetdiagError
from vnetdiag.model.namespaces import Holder, Namespace
from vnetdiag.system import netns, rtnl
from vnetdiag.system.proc import comm

MAX_HOLDERS = 8

# /proc/net files read per namespace, by key -> path below /proc/thread-self/net
PROC_NET_FILES = {
    "snmp": "snmp", "netstat": "netstat", "snmp6": "snmp6",
    "sockstat": "sockstat", "sockstat6": "sockstat6", "conntrack_stat": "stat/nf_conntrack",
}
SYSCTL_FILES = {
    "conntrack_count": "/proc/sys/net/netfilter/nf_conntrack_count",
    "conntrack_max": "/proc/sys/net/netfilter/nf_conntrack_max",
}


def enumerate_namespaces(proc_root: Path = Path("/proc"), run_dir: Path = netns.NETNS_RUN_DIR) -> list[Namespace]:
    """All namespaces this process can see: host first, then named, then unnamed."""
    named = netns.list_named(run_dir)
    by_inode: dict[int, list[int]] = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"{entry.path}/ns/net").st_ino
        except OSError:
            continue  # exited, or not ours to look at without root
        pids = by_inode.setdefault(ino, [])
        if len(pids) < MAX_HOLDERS:
            pids.append(int(entry.name))
    # The host is PID 1's namespace; in a container where PID 1 is not ours to
    # read, it is the namespace this process lives in.
    host_path = proc_root / "1/ns/net"
    try:
        host = os.stat(host_path).st_ino
    except OSError:
        host_path = proc_root / str(os.getpid()) / "ns/net"
        host = os.stat(host_path).st_ino
    out: list[Namespace] = []

    def holders(ino: int) -> tuple[Holder, ...]:
        return tuple(Holder(pid=p, comm=comm(p, proc_root) or "?") for p in sorted(by_inode.get(ino, ())))

    out.append(Namespace(inode=host, name="host", path=str(host_path),
                         holders=(), is_host=True))
    seen = {host}
    for name, ino in sorted(named.items()):
        if ino in seen:
            continue
        seen.add(ino)
        out.append(Namespace(inode=ino, name=name, path=str(run_dir / name), holders=holders(ino)))
    for ino, pids in sorted(by_inode.items()):
        if ino in seen:
            continue
        seen.add(ino)
        out.append(Namespace(inode=ino, name=None, path=str(proc_root / str(min(pids)) / "ns/net"),
                             holders=holders(ino)))
    return out


@dataclass
class NsHandle:
    """What the pool keeps open for one namespace."""

    ns: Namespace
    nl: rtnl.Rtnl
    files: dict[str, int] = field(default_factory=dict)
    """Open /proc/net and sysctl files by key (see PROC_NET_FILES)."""
    missing: dict[str, str] = field(default_factory=dict)
    """Files that could not be opened, with why (e.g. conntrack not loaded)."""
    nsids: dict[int, int] = field(default_factory=dict)
    """This namespace's netns ids -> namespace inode, learnt as needed."""
    cache: dict = field(default_factory=dict)
    """Per-interface caches of collectors (ethtool string sets, driver info)."""

    def close(self) -> None:
        self.nl.close()
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()

    def read(self, key: str) -> str | None:
        fd = self.files.get(key)
        if fd is None:
            return None
        os.lseek(fd, 0, os.SEEK_SET)  # seq_file regenerates from offset 0; no pread on seq files
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
            # seq_file fills the whole buffer when it has more: a short read is the end.
            if len(chunk) < 65536:
                break
        return b"".join(chunks).decode("ascii", "replace")


class NetlinkPool:
    """Open handles to every namespace, kept across snapshots. Use as a context
    manager or call ``close()``."""

    def __init__(self, *, proc_root: Path = Path("/proc"), run_dir: Path = netns.NETNS_RUN_DIR) -> None:
        self.proc_root = proc_root
        self.run_dir = run_dir
        self.handles: dict[int, NsHandle] = {}
        self.errors: dict[int, str] = {}
        """Namespaces that could not be opened in the last refresh -> why."""
        self.namespaces: list[Namespace] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "NetlinkPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for h in self.handles.values():
            h.close()
        self.handles.clear()

    def refresh(self) -> list[NsHandle]:
        """Re-enumerate; open new namespaces, close vanished ones; return live handles
        in enumeration order."""
        with self._lock:
            self.namespaces = enumerate_namespaces(self.proc_root, self.run_dir)
            live = {ns.inode for ns in self.namespaces}
            for ino in [i for i in self.handles if i not in live]:
                self.handles.pop(ino).close()
            self.errors = {}
            out = []
            for ns in self.namespaces:
                h = self.handles.get(ns.inode)
                if h is None:
                    try:
                        h = self._open(ns)
                    except (OSError, VnetdiagError) as exc:
                        self.errors[ns.inode] = _why(exc)
                        continue
                    self.handles[ns.inode] = h
                else:
                    h.ns = ns  # names and holders may change
                for nsid in [k for k, v in h.nsids.items() if v not in live]:
                    del h.nsids[nsid]
                out.append(h)
            return out

    def _open(self, ns: Namespace) -> NsHandle:
        if ns.inode == netns.current_inode():
            return self._open_here(ns)  # our own: no setns (which needs root)
        with netns.entered(ns.path):
            return self._open_here(ns)

    @staticmethod
    def _open_here(ns: Namespace) -> NsHandle:
        # In the namespace now: /proc/thread-self/net is this thread's view of it.
        h = NsHandle(ns=ns, nl=rtnl.open_here())
        for key, rel in PROC_NET_FILES.items():
            _open_into(h, key, f"/proc/thread-self/net/{rel}")
        for key, path in SYSCTL_FILES.items():
            _open_into(h, key, path)
        return h

    def handle(self, inode: int) -> NsHandle | None:
        return self.handles.get(inode)

    def resolve_nsid(self, h: NsHandle, nsid: int, candidates: list[NsHandle]) -> int | None:
        """The inode of the namespace that ``h`` calls ``nsid``, asking the kernel
        about each candidate (RTM_GETNSID with the candidate's fd) until one matches."""
        if nsid in h.nsids:
            return h.nsids[nsid]
        for c in candidates:
            try:
                fd = os.open(c.ns.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                got = rtnl.nsid_of(h.nl, fd)
            finally:
                os.close(fd)
            if got is not None:
                h.nsids[got] = c.ns.inode
                if got == nsid:
                    return c.ns.inode
        return None


def _open_into(h: NsHandle, key: str, path: str) -> None:
    try:
        h.files[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        h.missing[key] = "not present (module not loaded?)"
    except OSError as exc:
        h.missing[key] = os.strerror(exc.errno or 0)


def _why(exc: BaseException) -> str:
    if isinstance(exc, PermissionError) or getattr(exc, "exit_status", 0) == 3:
        return "cannot enter the namespace: needs root"
    return str(exc)
