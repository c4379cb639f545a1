"""Remove everything vnetdiag left in the kernel, whatever created it.

First the journals (system/undo.py): every journal whose owner process is dead,
and every persistent one (labs), faults before the lab they belong to. Then a
sweep by name for what a journal could have missed (an object created in the
instant between a spawn and its record): lab namespaces, stray lab backends
and lab VMs, ftrace instances of dead vnetdiag processes. The sweeps are listed in SWEEPS.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vnetdiag.system import proc
from vnetdiag.system.state import labs_dir
from vnetdiag.system.undo import DeleteNetns, Journal, all_journals


@dataclass(kw_only=True)
class CleanupReport:
    undone: list[str] = field(default_factory=list)
    """Journals replayed, by owner."""
    removed: list[str] = field(default_factory=list)
    """Objects removed by the sweeps, e.g. "netns vnd-hv1"."""
    skipped: list[str] = field(default_factory=list)
    """Journals left alone because their owner process is still running."""
    failures: list[str] = field(default_factory=list)

    def document(self) -> dict:
        """The ``vnetdiag.cleanup/1`` document."""
        return {"schema": "vnetdiag.cleanup/1", "undone": self.undone, "removed": self.removed,
                "skipped": self.skipped, "failures": self.failures}


def _order(j: Journal) -> tuple[int, str]:
    # Process-owned journals (tracers) first, then lab faults, then labs.
    if not j.owner.startswith("lab-"):
        return (0, j.owner)
    return (1 if "-fault-" in j.owner or j.owner.endswith("-background") else 2, j.owner)


def replay_journals(report: CleanupReport) -> None:
    for journal in sorted(all_journals(), key=_order):
        if journal.owner_alive():
            report.skipped.append(journal.owner)
            continue
        failures = journal.undo()
        report.undone.append(journal.owner)
        report.failures += failures


def _lab_prefixes() -> set[str]:
    prefixes = {os.environ.get("VNETDIAG_LAB_PREFIX", "vnd")}
    d = labs_dir()
    if d.is_dir():
        prefixes |= {p.name for p in d.iterdir()}
    return prefixes


def sweep_lab_namespaces(report: CleanupReport) -> None:
    """Namespaces of known lab prefixes whose lab no longer has a state file."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for prefix in _lab_prefixes():
        for name in names:
            if name.startswith(prefix + "-"):
                DeleteNetns(name=name).apply()
                report.removed.append(f"netns {name}")
    for prefix in _lab_prefixes():
        lab = labs_dir() / prefix
        if lab.is_dir():
            import shutil

            shutil.rmtree(lab, ignore_errors=True)


_BACKEND = re.compile(rb"vnetdiag\.lab\.backend\x00--lab\x00([^\x00]+)")


def sweep_backends(report: CleanupReport) -> None:
    """Backend processes (found by command line) of this state's labs."""
    prefixes = _lab_prefixes()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        m = _BACKEND.search(cmdline)
        if m and m.group(1).decode() in prefixes:
            pid = int(pid_dir.name)
            ticks = proc.start_ticks(pid)
            if ticks is not None and pid != os.getpid():
                proc.terminate(proc.ProcessId(pid=pid, start_ticks=ticks))
                report.removed.append(f"backend pid {pid}")


def sweep_lab_vms(report: CleanupReport) -> None:
    """QEMU guests of this state directory's labs: their QMP socket, console and
    serial paths are in the lab's directory, so the command line names it."""
    marker = (str(labs_dir()) + "/").encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(b"qemu-system") and any(marker in a for a in argv):
            pid = int(pid_dir.name)
            ticks = proc.start_ticks(pid)
            if ticks is not None:
                proc.terminate(proc.ProcessId(pid=pid, start_ticks=ticks))
                report.removed.append(f"lab VM pid {pid}")


TRACING_INSTANCES = Path("/sys/kernel/tracing/instances")
_INSTANCE = re.compile(r"^vnetdiag-(\d+)(?:-\d+)?$")


TRACING_SWEEP_LOCK = "tracing-sweep"
"""Machine-wide: one sweep of dead tracers' instances at a time (every tracer
sweeps when it starts), and whoever holds it (a test looking at what a SIGKILLed
tracer left) sees no other process remove those instances meanwhile."""


def sweep_tracing_instances(report: CleanupReport) -> None:
    """ftrace instances named vnetdiag-<pid> whose process is gone."""
    from vnetdiag.system.undo import machine_lock

    if not TRACING_INSTANCES.is_dir():
        return
    with machine_lock(TRACING_SWEEP_LOCK):
        _sweep_tracing_instances(report)


def _sweep_tracing_instances(report: CleanupReport) -> None:
    for inst in TRACING_INSTANCES.iterdir():
        m = _INSTANCE.match(inst.name)
        if not m or proc.start_ticks(int(m.group(1))) is not None:
            continue
        try:
            (inst / "tracing_on").write_text("0")
            (inst / "events" / "enable").write_text("0")
        except OSError:
            pass
        try:
            inst.rmdir()
            report.removed.append(f"ftrace instance {inst.name}")
        except FileNotFoundError:
            pass  # its owner's own cleanup removed it meanwhile
        except OSError as exc:
            report.failures.append(f"ftrace instance {inst.name}: {exc.strerror}")


def sweep_bpftrace(report: CleanupReport) -> None:
    """bpftrace helpers (eBPF drop backend) whose owner is dead: found by the
    script path on their command line (system/bpftrace.py names it after the
    owner's pid), for the instant between spawn and journal record. Their BPF
    programs and maps go with the process. Then the owners' script files."""
    from vnetdiag.system import bpftrace

    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            owner = bpftrace.script_owner((pid_dir / "cmdline").read_bytes())
        except OSError:
            continue
        if owner is None or proc.start_ticks(owner) is not None:
            continue
        pid = int(pid_dir.name)
        ticks = proc.start_ticks(pid)
        if ticks is not None:
            proc.terminate(proc.ProcessId(pid=pid, start_ticks=ticks))
            report.removed.append(f"bpftrace pid {pid}")
    d = bpftrace.scripts_dir()
    for script in d.glob(f"{bpftrace.SCRIPT_PREFIX}*.bt") if d.is_dir() else ():
        m = bpftrace.SCRIPT_RE.search(script.name)
        if m and proc.start_ticks(int(m.group(1))) is None:
            script.unlink(missing_ok=True)


def sweep_shared_settings(report: CleanupReport) -> None:
    """Global settings (nf_conntrack_max) whose every holder's journal is gone:
    put back the value the machine had before vnetdiag changed it."""
    from vnetdiag.system.undo import SHARED_SETTINGS_DIR, ReleaseSharedSetting, holder_gone

    if not SHARED_SETTINGS_DIR.is_dir():
        return
    import json

    for rec in SHARED_SETTINGS_DIR.glob("*.json"):
        try:
            data = json.loads(rec.read_text())
        except (OSError, ValueError):
            continue
        if not all(holder_gone(h) for h in data.get("holders", [])):
            continue
        for holder in data.get("holders", []) or ["?"]:
            ReleaseSharedSetting(path=data["path"], holder=holder).apply()
        report.removed.append(f"setting {data['path']} restored")


# Run in this order after the journals.
SWEEPS: tuple[Callable[[CleanupReport], None], ...] = (
    sweep_backends,
    sweep_lab_vms,
    sweep_lab_namespaces,
    sweep_tracing_instances,
    sweep_bpftrace,
    sweep_shared_settings,
)


def cleanup() -> CleanupReport:
    report = CleanupReport()
    replay_journals(report)
    for sweep in SWEEPS:
        sweep(report)
    return report
