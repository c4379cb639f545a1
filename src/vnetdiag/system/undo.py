"""The one place that records kernel changes and undoes them.

Before vnetdiag changes kernel state it appends the *undo* of that change to a
journal file and fsyncs it (write-ahead). So whatever happens to the process,
even SIGKILL between two steps, the journal lists everything that may exist,
and replaying it in reverse order restores the machine. Every undo step is
idempotent: undoing something that never got created is not an error.

Journals live in ``<state>/journals/<owner>.jsonl``. A journal owned by a
process (a tracer run) may be replayed by anyone once that process is dead; a
persistent journal (a lab) is replayed by ``lab down`` or ``vnetdiag cleanup``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

from vnetdiag.errors import KernelError
from vnetdiag.system import proc
from vnetdiag.system.state import journals_dir


@dataclass(frozen=True, kw_only=True)
class UndoStep:
    op: ClassVar[str]

    def apply(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class DeleteNetns(UndoStep):
    op: ClassVar[str] = "delete-netns"
    name: str

    def apply(self) -> None:
        path = Path("/run/netns") / self.name
        if path.exists():
            _run(["ip", "netns", "delete", self.name])


@dataclass(frozen=True, kw_only=True)
class KillProcess(UndoStep):
    op: ClassVar[str] = "kill-process"
    pid: int
    start_ticks: int

    def apply(self) -> None:
        proc.terminate(proc.ProcessId(pid=self.pid, start_ticks=self.start_ticks))


@dataclass(frozen=True, kw_only=True)
class RestoreFile(UndoStep):
    """Write back the old content of a file such as a global sysctl."""

    op: ClassVar[str] = "restore-file"
    path: str
    content: str

    def apply(self) -> None:
        try:
            if Path(self.path).read_text() == self.content:
                return
            Path(self.path).write_text(self.content)
        except FileNotFoundError:
            pass


SHARED_SETTINGS_DIR = Path("/run/vnetdiag-shared")
"""Machine-wide (not per state directory): global kernel settings are machine-wide."""


@contextlib.contextmanager
def _shared_lock():
    SHARED_SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
    with open(SHARED_SETTINGS_DIR / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _shared_record(path: str) -> Path:
    return SHARED_SETTINGS_DIR / (path.strip("/").replace("/", "_") + ".json")


# -- machine-wide locks: exclusive use of global settings, one tracing sweep at a time

_machine_locks: dict[str, list[int]] = {}
"""Lock name -> [fd, shared depth, exclusive depth] of the machine-wide locks
this process holds (fd -1: an ancestor holds it for us)."""
_machine_locks_guard = threading.Lock()


def _lock_path(name: str) -> Path:
    return SHARED_SETTINGS_DIR / f"{name}.lock"


def _ancestors() -> set[int]:
    pids, pid = set(), os.getppid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return pids


def _ancestor_mode(path: Path) -> str | None:
    """"READ" or "WRITE" if a parent (grandparent, ...) of this process holds the
    flock on ``path``: a command that a test runs while holding the lock acts on
    the test's behalf and must not wait for it (it would wait forever)."""
    try:
        st = path.stat()
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters' lines have "->".
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    mine = _ancestors()
    modes = {f[3] for f in map(str.split, locks) if len(f) > 5 and f[1] == "FLOCK" and f[5] == key
             and f[4].isdigit() and int(f[4]) in mine}
    return "WRITE" if "WRITE" in modes else ("READ" if modes else None)


def _flock_fair(fd: int, name: str, op: int) -> None:
    """flock ``fd`` (LOCK_SH or LOCK_EX) after passing the lock's turnstile: a
    writer waiting for the readers to leave holds the turnstile, so no new
    reader slips in before it (flock alone lets readers starve a writer)."""
    gate = os.open(SHARED_SETTINGS_DIR / f"{name}.turnstile", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(fd, op)
    finally:
        os.close(gate)


def acquire_machine_lock(name: str, *, shared: bool = False) -> None:
    """Take the machine-wide lock ``name`` (exclusive, or shared with other
    shared holders), waiting while another process holds it in a conflicting
    mode; writers are not starved by a stream of readers. Re-entrant within a
    process (each acquire needs its release). An exclusive acquire while holding
    it shared upgrades: it lets go and queues as a writer (two upgraders holding
    it shared would otherwise wait for each other); its release downgrades. A
    no-op in a process whose ancestor holds it. The kernel drops it when the
    process dies, so a crash never leaves it held."""
    with _machine_locks_guard:
        held = _machine_locks.get(name)
        if held is None:
            path = _lock_path(name)
            SHARED_SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
            mode = _ancestor_mode(path)
            if mode == "READ" and not shared:
                raise KernelError(f"a parent process holds {path} shared; this command needs it exclusive "
                                  "and would wait for its own parent forever",
                                  hint="take it exclusive in the parent (tests: the global_settings fixture)")
            if mode is not None:
                fd = -1
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            held = _machine_locks[name] = [fd, 0, 0]
        fd, n_shared, n_excl = held
        if fd >= 0 and n_excl == 0 and (not shared or n_shared == 0):
            try:
                if n_shared:
                    fcntl.flock(fd, fcntl.LOCK_UN)  # upgrade: queue as a writer like any other
                _flock_fair(fd, name, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                del _machine_locks[name]
                raise
        held[1 if shared else 2] += 1


def release_machine_lock(name: str, *, shared: bool = False) -> None:
    with _machine_locks_guard:
        held = _machine_locks.get(name)
        if held is None or held[1 if shared else 2] == 0:
            return
        held[1 if shared else 2] -= 1
        fd, n_shared, n_excl = held
        if n_shared == 0 and n_excl == 0:
            del _machine_locks[name]
            if fd >= 0:
                os.close(fd)  # closing the only fd releases the flock
        elif fd >= 0 and not shared and n_excl == 0:
            fcntl.flock(fd, fcntl.LOCK_SH)  # back to shared: others may read again


@contextlib.contextmanager
def machine_lock(name: str, *, shared: bool = False):
    acquire_machine_lock(name, shared=shared)
    try:
        yield
    finally:
        release_machine_lock(name, shared=shared)


GLOBAL_SETTINGS_LOCK = "global-settings"
"""Held exclusive by whoever changes a global setting, for as long as the change
lasts in that process (a fault from add to clear; a test for its whole run): a
second lab's fault, or another test run's, waits instead of racing it. Held
shared by work that must not see such a change (tests sending traffic)."""

_holding: dict[str, int] = {}
"""Holders whose shared setting this process changed and has not released yet."""


def exclusive_global_settings():
    """A context holding exclusive use of the machine's global settings."""
    return machine_lock(GLOBAL_SETTINGS_LOCK)


def stable_global_settings():
    """A context in which no one changes the machine's global settings (shared
    with other such holders): for work whose outcome a lowered nf_conntrack_max
    would change, such as traffic through a lab's firewall."""
    return machine_lock(GLOBAL_SETTINGS_LOCK, shared=True)


def hold_shared_setting(path: str, holder: str) -> None:
    """Note that ``holder`` is about to change the global file ``path``. Waits
    for exclusive use (GLOBAL_SETTINGS_LOCK), kept until this process releases
    the holder. The first holder records the pristine content; later ones only
    add themselves, so two faults that lower the same sysctl can be undone in
    any order. ``holder`` is best the absolute path of the holder's journal:
    cleanup, whatever its state directory, then knows whether it still exists."""
    acquire_machine_lock(GLOBAL_SETTINGS_LOCK)
    _holding[holder] = _holding.get(holder, 0) + 1
    with _shared_lock():
        rec = _shared_record(path)
        data = json.loads(rec.read_text()) if rec.exists() else {"path": path, "pristine": Path(path).read_text(),
                                                                 "holders": []}
        if holder not in data["holders"]:
            data["holders"].append(holder)
        rec.write_text(json.dumps(data))


def holder_gone(holder: str) -> bool:
    """A holder is gone when its journal is: an absolute journal path, or (older
    records) an owner name in this state directory's journals."""
    journal = Path(holder) if os.path.isabs(holder) else journals_dir() / f"{holder}.jsonl"
    return not journal.exists()


@dataclass(frozen=True, kw_only=True)
class ReleaseSharedSetting(UndoStep):
    """Drop one holder of a global setting; the last one restores the pristine value."""

    op: ClassVar[str] = "release-shared-setting"
    path: str
    holder: str

    def apply(self) -> None:
        try:
            self._release()
        finally:
            if _holding.get(self.holder):
                _holding[self.holder] -= 1
                release_machine_lock(GLOBAL_SETTINGS_LOCK)

    def _release(self) -> None:
        with _shared_lock():
            rec = _shared_record(self.path)
            if not rec.exists():
                return
            data = json.loads(rec.read_text())
            data["holders"] = [h for h in data["holders"] if h != self.holder]
            if data["holders"]:
                rec.write_text(json.dumps(data))
                return
            try:
                Path(self.path).write_text(data["pristine"])
            except FileNotFoundError:
                pass
            rec.unlink()


@dataclass(frozen=True, kw_only=True)
class RemovePath(UndoStep):
    """Remove a file, or an empty directory (tracefs instances are directories)."""

    op: ClassVar[str] = "remove-path"
    path: str

    def apply(self) -> None:
        p = Path(self.path)
        try:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        except FileNotFoundError:
            pass


@dataclass(frozen=True, kw_only=True)
class RunCommand(UndoStep):
    """Run a command whose failure means 'already undone' (e.g. delete a rule)."""

    op: ClassVar[str] = "run"
    argv: tuple[str, ...]

    def apply(self) -> None:
        _run(list(self.argv), check=False)


# The explicit list of step kinds a journal may contain (decoded by ``op``).
UNDO_STEPS: tuple[type[UndoStep], ...] = (DeleteNetns, KillProcess, RestoreFile, ReleaseSharedSetting, RemovePath,
                                          RunCommand)
_BY_OP = {cls.op: cls for cls in UNDO_STEPS}


def _run(argv: list[str], *, check: bool = True) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UndoFailed(f"{' '.join(argv)}: {result.stderr.strip()}")


class UndoFailed(Exception):
    pass


def _encode(step: UndoStep) -> str:
    body = asdict(step)
    return json.dumps({"op": step.op, **body}, sort_keys=True)


def _decode(line: str) -> UndoStep | None:
    try:
        data = json.loads(line)
        cls = _BY_OP[data.pop("op")]
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)
    except (ValueError, KeyError, TypeError):
        # A torn last line (killed mid-write) or an unknown step: skip it; the
        # step it described had not been started, because we write first.
        return None


class Journal:
    """Append-only, fsync'ed list of undo steps for one owner."""

    def __init__(self, owner: str, *, persistent: bool = False, directory: Path | None = None) -> None:
        self.owner = owner
        self.path = (directory or journals_dir()) / f"{owner}.jsonl"
        self.persistent = persistent

    def open(self) -> "Journal":
        """Create the journal (with a header naming its owner process) if needed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            me = proc.current()
            header = {"journal": self.owner, "persistent": self.persistent, "pid": me.pid,
                      "start_ticks": me.start_ticks, "created": time.time()}
            self._append(json.dumps(header))
        return self

    def record(self, step: UndoStep) -> None:
        """Record the undo of a change *before* making the change."""
        if not self.path.exists():
            self.open()
        self._append(_encode(step))

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def header(self) -> dict:
        try:
            with self.path.open() as f:
                return json.loads(f.readline())
        except (OSError, ValueError):
            return {}

    def steps(self) -> list[UndoStep]:
        try:
            lines = self.path.read_text().splitlines()[1:]
        except FileNotFoundError:
            return []
        return [s for s in map(_decode, lines) if s is not None]

    def owner_alive(self) -> bool:
        head = self.header()
        if not head or head.get("persistent"):
            return False
        return proc.is_alive(proc.ProcessId(pid=head["pid"], start_ticks=head["start_ticks"]))

    def undo(self) -> list[str]:
        """Undo every step, newest first; return the failures (the journal is kept
        if any step failed, so a later run can try again)."""
        failures: list[str] = []
        for step in reversed(self.steps()):
            try:
                step.apply()
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                failures.append(f"{step.op}: {exc}")
        if not failures:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        return failures


def all_journals(directory: Path | None = None) -> list[Journal]:
    d = directory or journals_dir()
    if not d.is_dir():
        return []
    out = []
    for path in sorted(d.glob("*.jsonl")):
        j = Journal(path.stem, directory=d)
        j.persistent = bool(j.header().get("persistent"))
        out.append(j)
    return out
