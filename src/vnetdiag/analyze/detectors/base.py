"""What every detector shares: declared parameters and the hysteresis that
turns "the condition held this cycle" into raised/cleared transitions.

A detector is pure: ``step(observation)`` looks at two successive snapshots
and returns transitions; it keeps only per-subject state (baselines,
streaks), and forgets subjects that disappeared, so memory stays bounded
while namespaces come and go.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from vnetdiag.errors import BadInputError
from vnetdiag.model.watch import Alert, Observation, Transition


@dataclass(frozen=True, kw_only=True, slots=True)
class Param:
    default: Any
    doc: str


class Detector:
    name: ClassVar[str]
    summary: ClassVar[str]
    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(self, params: dict | None = None) -> None:
        self.p = resolve_params(self.name, self.PARAMS, params or {})
        self.book = AlertBook(raise_after=int(self.p.get("raise_after", 1)),
                              clear_after=int(self.p.get("clear_after", 1)))

    def step(self, obs: Observation) -> list[Transition]:  # pragma: no cover - abstract
        raise NotImplementedError

    def active(self) -> list[Alert]:
        return self.book.active()


def resolve_params(detector: str, declared: dict[str, Param], given: dict) -> dict:
    """Defaults overlaid with ``given``; unknown keys and wrong types are errors
    that name the key (config files are user input)."""
    out = {k: p.default for k, p in declared.items()}
    for key, value in given.items():
        where = f"detectors.{detector}.{key}"
        if key not in declared:
            raise BadInputError(f"{where}: unknown parameter",
                                hint=f"known: {', '.join(sorted(declared)) or 'none'}")
        want = type(declared[key].default)
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise BadInputError(f"{where}: expected {want.__name__}, got {type(value).__name__} {value!r}",
                                hint="see docs/watch.md for the detector's parameters")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise BadInputError(f"{where}: must not be negative, got {value}", hint="see docs/watch.md")
        out[key] = value
    return out


@dataclass(slots=True)
class _State:
    alert: Alert
    on: int = 0
    off: int = 0
    active: bool = False


class AlertBook:
    """Hysteresis per alert key: raise after ``raise_after`` consecutive cycles
    with the condition, clear after ``clear_after`` consecutive cycles without."""

    def __init__(self, *, raise_after: int = 1, clear_after: int = 1) -> None:
        self.raise_after = max(1, raise_after)
        self.clear_after = max(1, clear_after)
        self._s: dict[tuple, _State] = {}

    def active(self) -> list[Alert]:
        return [s.alert for s in self._s.values() if s.active]

    def update(self, hits: list[Alert], present_subjects: set[str], now: float) -> list[Transition]:
        """``hits``: alerts whose condition holds this cycle. ``present_subjects``:
        subjects that could be evaluated (others are gone: their alerts clear and
        their state is dropped)."""
        out: list[Transition] = []
        seen = set()
        for a in hits:
            seen.add(a.key)
            s = self._s.get(a.key)
            if s is None:
                s = self._s[a.key] = _State(alert=a)
            s.on += 1
            s.off = 0
            s.alert = a
            if not s.active:
                if s.on >= self.raise_after:
                    s.active = True
                    out.append(Transition(change="raised", alert=a, at_unix_s=now))
        for key in list(self._s):
            if key in seen:
                continue
            s = self._s[key]
            if s.alert.subject not in present_subjects:
                if s.active:
                    out.append(Transition(change="cleared", at_unix_s=now,
                                          alert=replace(s.alert, summary=f"{s.alert.subject} is gone")))
                del self._s[key]
                continue
            if not s.active:
                del self._s[key]  # a pending streak broke: forget it
                continue
            s.on = 0
            s.off += 1
            if s.off >= self.clear_after:
                last = replace(s.alert, summary=f"cleared after {s.off} cycles without the condition; "
                                                f"last seen: {s.alert.summary}")
                out.append(Transition(change="cleared", alert=last, at_unix_s=now))
                del self._s[key]
        return out


def device_subject(netns: str, device: str, queue: int | None = None, direction: str = "tx") -> str:
    base = f"{netns}/{device}"
    return base if queue is None else f"{base}/{direction}-queue {queue}"
