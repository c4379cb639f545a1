"""Recovery ladders: which action to try for an active alert, and when.

Per detector the configuration gives an ordered list of actions. For one
alert, step 1 is tried up to its ``max_attempts`` times, each attempt followed
by its ``cooldown_s``; when the cooldown ends with the alert still active the
attempt is judged "did not clear" and the next attempt (or the next step) runs.
If the alert clears during a cooldown, the attempt is judged "cleared". When
every step is used up, one "exhausted" line is written and nothing more runs
for that alert. One-off events run the first step once, unjudged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.watch import ActionResult, ActionSpec, Alert, Transition, WatchConfig
from vnetdiag.watch import actions as actions_mod
from vnetdiag.watch.journal import AlertJournal


@dataclass(slots=True)
class _Ladder:
    step: int = 0
    attempts: int = 0
    """Attempts made of the current step."""
    last_mono: float | None = None
    pending: dict | None = None
    """The action line waiting for its outcome."""
    exhausted: bool = False


def subject_counters(snap: CounterSnapshot, alert: Alert) -> dict:
    """The counters an operator wants before/after an action on this subject."""
    if alert.ifindex is not None and alert.netns_inode is not None:
        for i in snap.interfaces:
            r = i.interface.ref
            if r.ifindex == alert.ifindex and r.netns_inode == alert.netns_inode:
                keep = ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped", "rx_errors", "tx_errors")
                out: dict = {k: i.stats.get(k) for k in keep}
                out["carrier"] = i.interface.carrier
                out["qdiscs"] = [{"kind": q.kind, "handle": q.handle, "parent": q.parent, "packets": q.packets,
                                  "drops": q.drops, "backlog_packets": q.backlog_packets,
                                  "backlog_bytes": q.backlog_bytes} for q in i.qdiscs if not q.is_class]
                return out
        return {"present": False}
    if alert.netns_inode is not None:
        for s in snap.netns_stats:
            if s.netns_inode == alert.netns_inode and s.conntrack:
                sums: dict[str, int] = {}
                for row in s.conntrack.per_cpu:
                    for k in ("insert_failed", "drop", "early_drop"):
                        sums[k] = sums.get(k, 0) + row.get(k, 0)
                return {"conntrack_count": s.conntrack.count, "conntrack_limit": s.conntrack.limit, **sums}
    return {}


Runner = Callable[..., ActionResult]


class Responder:
    def __init__(self, config: WatchConfig, journal: AlertJournal, *, dry_run: bool = False,
                 runner: Runner = actions_mod.run, clock: Callable[[], float] = time.monotonic) -> None:
        self.ladders_cfg = {d.name: d.actions for d in config.detectors if d.actions}
        self.journal = journal
        self.dry_run = dry_run
        self.runner = runner
        self.clock = clock
        self.ladders: dict[tuple, _Ladder] = {}
        self.results: list[ActionResult] = []
        """Recent results (bounded), for the exporter and the terminal."""
        self._n = 0

    def on_cycle(self, transitions: list[Transition], active: list[Alert], snap: CounterSnapshot,
                 ns_paths: dict[int, str]) -> list[ActionResult]:
        now = self.clock()
        done: list[ActionResult] = []
        for t in transitions:
            if t.change == "cleared":
                lad = self.ladders.pop(t.alert.key, None)
                if lad and lad.pending:
                    self._outcome(lad, t.alert, snap, cleared=True, now=now)
            elif t.change == "event":
                steps = self.ladders_cfg.get(t.alert.detector)
                if steps:
                    done.append(self._attempt(steps[0], t.alert, 1, snap, ns_paths, judged=False))
        for alert in active:
            steps = self.ladders_cfg.get(alert.detector)
            if not steps:
                continue
            lad = self.ladders.setdefault(alert.key, _Ladder())
            if lad.exhausted:
                continue
            if lad.pending:
                spec = steps[lad.step]
                if now - lad.last_mono < spec.cooldown_s:
                    continue
                self._outcome(lad, alert, snap, cleared=False, now=now)
            if lad.attempts >= steps[lad.step].max_attempts:
                lad.step += 1
                lad.attempts = 0
            if lad.step >= len(steps):
                lad.exhausted = True
                self.journal.write("exhausted", detector=alert.detector, subject=alert.subject, kind=alert.kind,
                                   summary=f"every recovery action for {alert.subject} was tried; still active")
                continue
            lad.attempts += 1
            lad.last_mono = now
            result = self._attempt(steps[lad.step], alert, lad.attempts, snap, ns_paths, judged=True, ladder=lad)
            done.append(result)
        # Forget ladders of alerts that are neither active nor pending (subject gone).
        keys = {a.key for a in active}
        for k in [k for k, lad in self.ladders.items() if k not in keys and not lad.pending]:
            del self.ladders[k]
        self.results = (self.results + done)[-50:]
        return done

    def _attempt(self, spec: ActionSpec, alert: Alert, attempt: int, snap, ns_paths, *, judged: bool,
                 ladder: _Ladder | None = None) -> ActionResult:
        self._n += 1
        action_id = f"{os.getpid()}-{self._n}"
        before = subject_counters(snap, alert)
        result = self.runner(spec, alert, ns_paths.get(alert.netns_inode) if alert.netns_inode else None,
                             attempt=attempt, dry_run=self.dry_run, journal_owner=f"watch-action-{action_id}")
        result = replace(result, detector=alert.detector, subject=alert.subject)
        line = self.journal.write("action", action_id=action_id, detector=alert.detector, subject=alert.subject,
                                  kind=alert.kind, result=asdict(result), max_attempts=spec.max_attempts,
                                  cooldown_s=spec.cooldown_s, counters_before=before, dry_run=self.dry_run)
        if ladder is not None and judged:
            ladder.pending = line
        return result

    def _outcome(self, lad: _Ladder, alert: Alert, snap, *, cleared: bool, now: float) -> None:
        p = lad.pending or {}
        self.journal.write("outcome", action_id=p.get("action_id"), detector=alert.detector, subject=alert.subject,
                           kind=alert.kind, action=p.get("result", {}).get("action"), cleared=cleared,
                           after_s=round(now - (lad.last_mono or now), 3),
                           counters_before=p.get("counters_before"), counters_after=subject_counters(snap, alert))
        lad.pending = None
