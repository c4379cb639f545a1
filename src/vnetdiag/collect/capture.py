"""Bounded tcpdump captures on devices inside network namespaces.

Each tcpdump is started through a shell that waits for one line on stdin
before it execs tcpdump inside the namespace (``system.nsexec.argv_in``); the pid (kept across the
execs) is recorded in the undo journal first, then the shell is released. So a
capture process never exists without a journal entry that kills it, even if
vnetdiag is SIGKILLed (the next run or ``vnetdiag cleanup`` replays it).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from vnetdiag.errors import KernelError, MissingFeatureError
from vnetdiag.system import proc
from vnetdiag.model.namespaces import Namespace
from vnetdiag.system.netns import find_one
from vnetdiag.system.nsexec import argv_in
from vnetdiag.system.undo import Journal, KillProcess, RemovePath

_READY_TIMEOUT_S = 5.0


def _ready(p: subprocess.Popen, deadline: float) -> str:
    """Wait for tcpdump's 'listening on' line; return stderr read so far."""
    seen = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(p.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if b"listening on" in seen:
            return seen.decode(errors="replace")
    return seen.decode(errors="replace")


def capture(targets: Sequence[tuple[Namespace | str, str]], *, duration_s: float = 5.0, max_packets: int = 200_000,
            snaplen: int = 128, directory: Path | None = None, nano: bool = False,
            while_running: Callable[[], None] | None = None, journal_dir: Path | None = None) -> dict[str, Path]:
    """Capture on every (netns, device) at once, for ``duration_s`` seconds or
    until ``while_running()`` returns (then stop), at most ``max_packets`` each.

    A namespace is a ``Namespace`` or any name ``system.netns.find_one`` takes.
    Returns {"label:device": path}. Without ``directory`` the files go to a new
    temporary directory the caller owns (and the journal removes it after a crash).
    """
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        raise MissingFeatureError("tcpdump is not installed", hint="apt-get install tcpdump")
    # NotFoundError naming what exists, before anything starts.
    targets = [(ns if isinstance(ns, Namespace) else find_one(ns), dev) for ns, dev in targets]
    temp = directory is None
    out_dir = Path(tempfile.mkdtemp(prefix="vnetdiag-capture-")) if temp else Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(f"capture-{os.getpid()}-{time.monotonic_ns()}", directory=journal_dir).open()
    if temp:
        journal.record(RemovePath(path=str(out_dir)))
    files: dict[str, Path] = {}
    procs: list[tuple[str, subprocess.Popen]] = []
    try:
        for ns, dev in targets:
            label = f"{ns.label}:{dev}"
            # The label names the file for people; the inode keeps two alike apart.
            stem = re.sub(r"[^A-Za-z0-9_.:-]+", "_", f"{ns.label}-{dev}").strip("_")
            path = out_dir / (f"{stem}.pcap" if ns.name else f"{stem}-{ns.inode}.pcap")
            if temp:
                journal.record(RemovePath(path=str(path)))
            argv = [tcpdump, "-i", dev, "-w", str(path), "-s", str(snaplen), "-c", str(max_packets),
                    "-U", "-n", "-Z", "root", "--immediate-mode"]
            if nano:
                argv += ["--time-stamp-precision=nano"]
            shell = "read _ && exec \"$@\""
            p = subprocess.Popen(["sh", "-c", shell, "sh", *argv_in(ns, argv)], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ticks = proc.start_ticks(p.pid)
            if ticks is not None:
                journal.record(KillProcess(pid=p.pid, start_ticks=ticks))
            p.stdin.write(b"go\n")
            p.stdin.close()
            procs.append((label, p))
            files[label] = path
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for label, p in procs:
            said = _ready(p, deadline)
            if "listening on" not in said:
                raise KernelError(f"tcpdump on {label} did not start: {said.strip() or 'no output'}",
                                  hint="check that the device exists in that namespace (ip -n NS link)")
        if while_running is not None:
            while_running()
        else:
            time.sleep(duration_s)
    finally:
        for _label, p in procs:
            proc.terminate(proc.ProcessId(pid=p.pid, start_ticks=proc.start_ticks(p.pid) or 0), timeout_s=3.0)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()
        if not temp:
            journal.undo()  # only the kill steps: the files are the user's
    # For a temporary directory the journal stays until the caller is done
    # with the files: ``release(files)`` removes both.
    return files


def release(files: dict[str, Path]) -> None:
    """Remove captures made in a temporary directory, and their journal entries."""
    dirs = {p.parent for p in files.values()}
    for d in dirs:
        if d.name.startswith("vnetdiag-capture-"):
            shutil.rmtree(d, ignore_errors=True)
    from vnetdiag.system.undo import all_journals

    for j in all_journals():
        if j.owner.startswith(f"capture-{os.getpid()}-") and not j.persistent:
            j.undo()
