"""Network namespaces: names, inodes, and entering one from the current thread.

A namespace is identified by the inode of its nsfs file; a name is only a label
(the bind mount under /run/netns). setns(2) on CLONE_NEWNET changes the calling
thread only, so ``entered`` is safe to use from one thread while others stay put.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vnetdiag.errors import BadInputError, KernelError, NotFoundError, PrivilegeError, UsageError
from vnetdiag.model.namespaces import FORMS_HELP, Namespace, label, matches, parse_spec

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        if err == 1:  # EPERM
            raise PrivilegeError("cannot enter a network namespace: not permitted", hint="run as root")
        raise KernelError("setns failed", errno=err)


def named_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def inode_of(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_ino


def current_inode() -> int:
    return inode_of(f"/proc/self/task/{threading.get_native_id()}/ns/net")


def host_inode() -> int:
    """The namespace of PID 1, which is what users mean by 'the host'."""
    return inode_of("/proc/1/ns/net")


def list_named(run_dir: Path = NETNS_RUN_DIR) -> dict[str, int]:
    """Named namespaces as {name: inode}; stale names (unmounted files) are skipped."""
    out: dict[str, int] = {}
    try:
        entries = sorted(run_dir.iterdir())
    except FileNotFoundError:
        return out
    for entry in entries:
        try:
            st = os.stat(entry)
        except OSError:
            continue
        # An unmounted placeholder is an ordinary empty file on the /run fs, whose
        # device differs from nsfs; a live name is a bind mount of an nsfs inode.
        if st.st_dev != os.stat("/proc/self/ns/net").st_dev:
            continue
        out[entry.name] = st.st_ino
    return out


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def _inode_at(path: str) -> int | None:
    """The inode of the network namespace file at ``path``, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino if st.st_dev == _nsfs_dev() else None


def find(text: str | int, namespaces: Sequence[Namespace] | None = None) -> list[Namespace]:
    """Every namespace ``text`` names, in any accepted form (see
    ``model.namespaces.FORMS_HELP``): one for most forms, several for a glob.
    UsageError for a malformed name; an empty list when nothing matches."""
    from vnetdiag.system.nspool import enumerate_namespaces

    try:
        spec = parse_spec(str(text))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pool = list(namespaces) if namespaces is not None else enumerate_namespaces()
    pid_inode = path_inode = None
    if spec.form in ("pid", "number"):
        pid_inode = _inode_at(f"/proc/{spec.value}/ns/net")
    elif spec.form == "path":
        path_inode = _inode_at(str(spec.value))
        if path_inode is None and os.path.exists(str(spec.value)):
            raise BadInputError(f"{spec.text} is not a network namespace file",
                                hint="give /proc/PID/ns/net, /run/netns/NAME or a bind mount of one")
    # An exact 'ip netns' name wins over reading it as a number.
    named = [ns for ns in pool if ns.name == spec.text]
    if named:
        return named
    got = [ns for ns in pool if matches(spec, ns, path_inode=path_inode, pid_inode=pid_inode)]
    if not got and spec.form in ("pid", "number", "path") and (pid_inode or path_inode):
        # Not enumerated (a bind mount outside /run/netns, or a process that just
        # started): the file the user named still opens it.
        ino = pid_inode or path_inode
        path = str(spec.value) if spec.form == "path" else f"/proc/{spec.value}/ns/net"
        got = [Namespace(inode=int(ino), name=None, path=path)]  # type: ignore[arg-type]
    return got


def matcher(patterns: Sequence[str] | None) -> Callable[[Namespace], bool] | None:
    """A predicate for "any of ``patterns``" (every accepted form; globs match
    names and labels), for collectors that enumerate namespaces again and again
    (a watch sees namespaces created after it started). None: no filter."""
    if not patterns:
        return None
    specs = []
    for p in patterns:
        try:
            spec = parse_spec(p)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        # A PID or a path names one namespace for good: look it up once.
        looked = None
        if spec.form in ("pid", "number"):
            looked = _inode_at(f"/proc/{spec.value}/ns/net")
        elif spec.form == "path":
            looked = _inode_at(str(spec.value))
        specs.append((spec, looked))

    def only(ns: Namespace) -> bool:
        return any(ns.name == spec.text or matches(spec, ns, path_inode=looked, pid_inode=looked)
                   for spec, looked in specs)
    return only


def find_one(text: str | int, namespaces: Sequence[Namespace] | None = None) -> Namespace:
    """The one namespace ``text`` names; NotFoundError listing the forms and the
    closest candidates when there is none, UsageError when a glob matches several."""
    pool = list(namespaces) if namespaces is not None else None
    if pool is None:
        from vnetdiag.system.nspool import enumerate_namespaces

        pool = enumerate_namespaces()
    got = find(text, pool)
    if len(got) == 1:
        return got[0]
    if len(got) > 1:
        raise UsageError(f"{text!r} names {len(got)} namespaces ({', '.join(label(n) for n in got[:6])})",
                         hint="give one name, an inode or pid:PID")
    raise not_found(str(text), pool)


def not_found(text: str, pool: Sequence[Namespace]) -> NotFoundError:
    labels = [label(n) for n in pool]
    close = difflib.get_close_matches(text, labels, n=3, cutoff=0.5) or labels[:3]
    return NotFoundError(f"no network namespace {text!r}",
                         hint=f"give {FORMS_HELP}; closest: {', '.join(close) or 'none'}")


def resolve(spec: str | int, run_dir: Path = NETNS_RUN_DIR) -> Path:
    """A path that opens the namespace ``spec`` (any accepted form)."""
    if spec in ("host", "init", ""):
        return Path("/proc/1/ns/net")
    if run_dir != NETNS_RUN_DIR:
        from vnetdiag.system.nspool import enumerate_namespaces

        return Path(find_one(spec, enumerate_namespaces(run_dir=run_dir)).path)
    return Path(find_one(spec).path)


@contextlib.contextmanager
def entered(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the body with this thread inside the namespace at ``path``, then return."""
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"network namespace {os.fspath(path)} vanished") from None
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)
