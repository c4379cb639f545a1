"""Recovery actions: what they run, and running them.

Each built-in action is planned as a list of commands first (so ``--dry-run``
shows exactly what would run), then executed inside the alert's namespace
with nsenter. Kernel changes that must not be left half-done go through the
undo journal (system/undo.py) before they are made:

* link-bounce: the undo ("set the device up") is journaled before the device
  is set down, so a watch killed between down and up leaves a journal that
  ``vnetdiag cleanup`` replays; after the bounce the journal is replayed at
  once (setting up an up device is a no-op) and so removed.
* qdisc-reset: ``tc qdisc del root`` (the device gets its default qdisc back,
  the backlog is freed). A default root qdisc (handle 0:) cannot be deleted:
  it is first replaced by pfifo, with the delete journaled as its undo.
* offloads-off: ``ethtool -K DEV gso off tso off sg off gro off``; the repair
  is meant to stay, so it is not undone; the features before are in the result.
* exec: the operator's command, the alert JSON on stdin, killed with its whole
  process group after ``timeout_s``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from vnetdiag.model.watch import ActionResult, ActionSpec, Alert
from vnetdiag.system.nsexec import argv_in
from vnetdiag.system.undo import Journal, RunCommand


def _in_ns(ns_path: str | None, argv: list[str]) -> list[str]:
    return argv_in(ns_path, argv)


def plan(spec: ActionSpec, alert: Alert, ns_path: str | None) -> list[list[str]]:
    """The commands an action runs for this alert (exec: the operator's argv)."""
    if spec.kind == "exec":
        return [list(spec.command)]
    if not alert.device:
        return []
    dev = alert.device
    if spec.kind == "link-bounce":
        return [_in_ns(ns_path, ["ip", "link", "set", "dev", dev, "down"]),
                _in_ns(ns_path, ["ip", "link", "set", "dev", dev, "up"])]
    if spec.kind == "qdisc-reset":
        return [_in_ns(ns_path, ["tc", "qdisc", "del", "dev", dev, "root"])]
    if spec.kind == "offloads-off":
        args: list[str] = []
        for f in spec.features:
            args += [f, "off"]
        return [_in_ns(ns_path, ["ethtool", "-K", dev, *args])]
    raise ValueError(spec.kind)


def alert_document(alert: Alert, *, attempt: int, action: str) -> dict:
    from dataclasses import asdict

    return {"schema": "vnetdiag.alert/1", "action": action, "attempt": attempt, **asdict(alert)}


def run(spec: ActionSpec, alert: Alert, ns_path: str | None, *, attempt: int, dry_run: bool,
        journal_owner: str) -> ActionResult:
    cmds = plan(spec, alert, ns_path)
    shown = " ; ".join(" ".join(c) for c in cmds)
    if not cmds:
        return ActionResult(action=spec.kind, attempt=attempt, status="skipped",
                            detail="the alert names no device to act on")
    if dry_run:
        return ActionResult(action=spec.kind, attempt=attempt, status="dry-run", detail=shown)
    t0 = time.monotonic()
    if spec.kind == "exec":
        return _exec(spec, alert, attempt, t0)
    journal = Journal(journal_owner)
    try:
        if spec.kind == "link-bounce":
            journal.record(RunCommand(argv=tuple(cmds[1])))
            rc, err = _run_all(cmds)
        elif spec.kind == "qdisc-reset":
            rc, err = _run_all(cmds)
            if rc != 0 and ("handle of zero" in err or "Invalid handle" in err):
                journal.record(RunCommand(argv=tuple(cmds[0])))
                rc, err = _run_all([_in_ns(ns_path, ["tc", "qdisc", "replace", "dev", alert.device, "root",
                                                     "pfifo"]), cmds[0]])
                shown = f"tc qdisc replace dev {alert.device} root pfifo ; {shown}"
        else:
            before = _features(ns_path, alert.device)
            rc, err = _run_all(cmds)
            shown += f" (before: {before})" if before else ""
    finally:
        # What was journaled is the completion of the change: replay it now.
        journal.undo()
    status = "ok" if rc == 0 else "failed"
    return ActionResult(action=spec.kind, attempt=attempt, status=status, returncode=rc,
                        detail=shown if rc == 0 else f"{shown}: {err.strip()}",
                        duration_s=round(time.monotonic() - t0, 3))


def _run_all(cmds: list[list[str]]) -> tuple[int, str]:
    for c in cmds:
        try:
            r = subprocess.run(c, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        if r.returncode != 0:
            return r.returncode, r.stderr
    return 0, ""


def _features(ns_path: str | None, device: str) -> str:
    try:
        r = subprocess.run(_in_ns(ns_path, ["ethtool", "-k", device]), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    keep = ("generic-segmentation-offload", "tcp-segmentation-offload", "scatter-gather",
            "generic-receive-offload")
    return ", ".join(line.strip() for line in r.stdout.splitlines() if line.split(":")[0].strip() in keep)


def _exec(spec: ActionSpec, alert: Alert, attempt: int, t0: float) -> ActionResult:
    doc = json.dumps(alert_document(alert, attempt=attempt, action="exec"))
    shown = " ".join(spec.command)
    try:
        p = subprocess.Popen(list(spec.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "VNETDIAG_ALERT_DETECTOR": alert.detector,
                                  "VNETDIAG_ALERT_SUBJECT": alert.subject, "VNETDIAG_ALERT_KIND": alert.kind})
    except OSError as exc:
        return ActionResult(action="exec", attempt=attempt, status="failed", detail=f"{shown}: {exc.strerror}",
                            duration_s=round(time.monotonic() - t0, 3))
    try:
        out, err = p.communicate(doc, timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return ActionResult(action="exec", attempt=attempt, status="timeout", returncode=None,
                            detail=f"{shown}: killed after {spec.timeout_s:g} s",
                            duration_s=round(time.monotonic() - t0, 3))
    except BrokenPipeError:
        out, err = "", "the command closed its stdin"
        p.wait()
    tail = (err or out or "").strip().splitlines()[-3:]
    return ActionResult(action="exec", attempt=attempt, status="ok" if p.returncode == 0 else "failed",
                        returncode=p.returncode, detail=shown + (f": {' | '.join(tail)}" if tail else ""),
                        duration_s=round(time.monotonic() - t0, 3))
