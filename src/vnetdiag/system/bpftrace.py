"""bpftrace as a helper process: find it, check it can run, run a script, read it.

A script runs as ``bpftrace -f json FILE``: every line bpftrace writes is one
JSON message (``attached_probes``, ``printf``, ``map``, ``lost_events``), which
:func:`parse_line` turns into a :class:`Message`. The process is journaled
(system/undo: KillProcess, and RemovePath of the script file) so that
``vnetdiag cleanup`` stops it even after vnetdiag was SIGKILLed; the script
file's path carries the owner's pid, which is what the cleanup sweep
(``sweep_bpftrace``) matches for the instant between spawn and record.

BPF programs and maps belong to the bpftrace process (file descriptors): when
it exits, for whatever reason, the kernel unloads them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnetdiag.errors import KernelError, MissingFeatureError, PrivilegeError
from vnetdiag.system import btf, proc, tracefs
from vnetdiag.system.sigterm import TermAsInterrupt
from vnetdiag.system.state import state_dir
from vnetdiag.system.undo import Journal, KillProcess, RemovePath

PACKAGE = "bpftrace"
SCRIPT_PREFIX = "vnetdiag-bpftrace-"
SCRIPT_RE = re.compile(rf"{SCRIPT_PREFIX}(\d+)-\d+\.bt$")
"""Script files are named vnetdiag-bpftrace-<owner pid>-<n>.bt."""
_SEQ = itertools.count(1)


def scripts_dir() -> Path:
    return state_dir() / "bpftrace"


def find() -> str:
    """The bpftrace executable on PATH, or MissingFeatureError with the package to install."""
    path = shutil.which("bpftrace")
    if path is None:
        raise MissingFeatureError("bpftrace is not installed (not on PATH)",
                                  hint=f"apt-get install {PACKAGE}, or use --backend tracefs")
    return path


def check_usable(tracepoint: tuple[str, str] = ("skb", "kfree_skb"), *, btf_path: Path = btf.VMLINUX,
                 tracefs_root: Path = tracefs.TRACEFS_ROOT) -> str:
    """Raise a VnetdiagError saying what is missing unless bpftrace can attach to
    ``tracepoint`` with BTF types here; return the bpftrace path."""
    path = find()
    if os.geteuid() != 0:
        raise PrivilegeError("the eBPF drop backend needs root (it loads BPF programs)",
                             hint="run it with sudo, or use --backend tracefs")
    if not btf_path.exists():
        raise MissingFeatureError(f"the kernel has no BTF at {btf_path}",
                                  hint="a kernel with CONFIG_DEBUG_INFO_BTF, or use --backend tracefs")
    root = tracefs.open_tracefs(tracefs_root)
    if tracefs.read_format(root, *tracepoint) is None:
        raise MissingFeatureError(f"this kernel has no {':'.join(tracepoint)} tracepoint",
                                  hint="drop tracing needs Linux >= 5.17 with CONFIG_TRACEPOINTS")
    return path


# -- output messages


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    kind: str
    """bpftrace's message type: attached_probes, printf, map, lost_events, time, ..."""
    data: Any


_PRINTF = '{"type": "printf", "data": "'
_PRINTF_END = '\\n"}'


def parse_line(line: str) -> Message | None:
    """One line of ``bpftrace -f json`` output; None for a blank or non-JSON line
    (bpftrace writes some warnings as plain text)."""
    line = line.strip()
    if line.startswith(_PRINTF) and line.endswith(_PRINTF_END):
        # The hot path (one line per streamed record): a printf of plain text
        # needs no JSON decoder; anything escaped inside takes the slow path.
        body = line[len(_PRINTF):-len(_PRINTF_END)]
        if "\\" not in body and '"' not in body:
            return Message(kind="printf", data=body + "\n")
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "type" not in doc:
        return None
    return Message(kind=str(doc["type"]), data=doc.get("data"))


def map_items(data: dict) -> dict[str, dict[tuple[str, ...], Any]]:
    """A ``map`` message's maps: name -> {key fields (split on ',') -> value}."""
    out: dict[str, dict[tuple[str, ...], Any]] = {}
    for name, entries in (data or {}).items():
        if isinstance(entries, dict):
            out[name] = {tuple(k.split(",")): v for k, v in entries.items()}
        else:  # a map without keys prints its value directly
            out[name] = {(): entries}
    return out


# -- the process


class BpftraceProcess:
    """One journaled bpftrace run of a script; messages go to ``on_message`` from a reader thread."""

    def __init__(self, script: str, on_message: Callable[[Message], None], *, attach_timeout_s: float = 30.0,
                 ready: Callable[[Message], bool] | None = None, journal_dir: Path | None = None,
                 raw_log: Path | None = None) -> None:
        """``ready`` tells the message after which the probes are live; bpftrace
        prints attached_probes *before* attaching, so a script should print
        something from BEGIN (which runs once every probe is attached) and
        pass a ``ready`` that recognises it."""
        self.script = script
        self.on_message = on_message
        self.attach_timeout_s = attach_timeout_s
        self.ready = ready or (lambda m: m.kind == "attached_probes")
        self.raw_log = raw_log
        """When set, every stdout line is also written there (recording golden inputs)."""
        self.journal_dir = journal_dir
        self.script_path = scripts_dir() / f"{SCRIPT_PREFIX}{os.getpid()}-{next(_SEQ)}.bt"
        self.proc: subprocess.Popen | None = None
        self.started_ns = 0
        self._journal: Journal | None = None
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []
        self._attached = threading.Event()
        self._sigterm = TermAsInterrupt()

    def start(self) -> None:
        exe = check_usable()
        self._journal = Journal(f"bpftrace-{os.getpid()}-{self.script_path.stem.rsplit('-', 1)[1]}",
                                directory=self.journal_dir).open()
        self._journal.record(RemovePath(path=str(self.script_path)))
        self.script_path.parent.mkdir(parents=True, exist_ok=True)
        self.script_path.write_text(self.script)
        self._sigterm.install()
        try:
            self.started_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            # A session of its own: Ctrl-C at the terminal reaches vnetdiag, which
            # stops bpftrace itself (after reading its final maps).
            self.proc = subprocess.Popen([exe, "-f", "json", str(self.script_path)], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                         start_new_session=True, bufsize=1)
            ticks = proc.start_ticks(self.proc.pid)
            if ticks is not None:
                self._journal.record(KillProcess(pid=self.proc.pid, start_ticks=ticks))
            self._reader = threading.Thread(target=self._read, name="vnetdiag-bpftrace", daemon=True)
            self._reader.start()
            threading.Thread(target=self._read_stderr, daemon=True).start()
            deadline = time.monotonic() + self.attach_timeout_s
            while not self._attached.wait(0.05):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._reader.join(timeout=2)
                    raise KernelError(f"bpftrace did not start: {self.stderr_tail() or 'no output'}",
                                      hint="run the script by hand: bpftrace " + str(self.script_path))
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        log = self.raw_log.open("w") if self.raw_log is not None else None
        try:
            for line in self.proc.stdout:
                if log is not None:
                    log.write(line)
                self._handle(line)
        finally:
            if log is not None:
                log.close()

    def _handle(self, line: str) -> None:
        msg = parse_line(line)
        if msg is None:
            return
        self.on_message(msg)
        if not self._attached.is_set() and self.ready(msg):
            self._attached.set()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if "RLIMIT_MEMLOCK" in line:  # bpftrace warns, then works with memcg accounting
                continue
            if len(self._stderr) < 200:
                self._stderr.append(line.rstrip())

    def stderr_tail(self) -> str:
        return " | ".join(self._stderr[-3:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout_s: float = 20.0) -> int | None:
        """SIGINT bpftrace (it prints its maps and exits), read to the end, undo the
        journal. Returns bpftrace's exit status."""
        rc = None
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGINT)
                try:
                    rc = self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    rc = self.proc.wait(timeout=5)
                if self._reader is not None:
                    self._reader.join(timeout=timeout_s)
        finally:
            self.close()
        return rc

    def close(self) -> None:
        """Kill bpftrace if still running and undo the journal; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._journal is not None:
            self._journal.undo()
            self._journal = None
        self._sigterm.restore()


def script_owner(cmdline: bytes) -> int | None:
    """The owner pid named by a bpftrace command line's script path, if it is ours."""
    for arg in cmdline.split(b"\0"):
        m = SCRIPT_RE.search(arg.decode(errors="replace"))
        if m:
            return int(m.group(1))
    return None
