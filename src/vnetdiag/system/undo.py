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
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

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


def hold_shared_setting(path: str, holder: str) -> None:
    """Note that ``holder`` is about to change the global file ``path``. The first
    holder records the pristine content; later ones only add themselves, so two
    faults that lower the same sysctl can be undone in any order."""
    with _shared_lock():
        rec = _shared_record(path)
        data = json.loads(rec.read_text()) if rec.exists() else {"path": path, "pristine": Path(path).read_text(),
                                                                 "holders": []}
        if holder not in data["holders"]:
            data["holders"].append(holder)
        rec.write_text(json.dumps(data))


@dataclass(frozen=True, kw_only=True)
class ReleaseSharedSetting(UndoStep):
    """Drop one holder of a global setting; the last one restores the pristine value."""

    op: ClassVar[str] = "release-shared-setting"
    path: str
    holder: str

    def apply(self) -> None:
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
