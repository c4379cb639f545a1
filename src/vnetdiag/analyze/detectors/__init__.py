"""Watch detectors: pure functions of successive counter snapshots.

Each detector is a small class in its own module; ``DETECTORS`` is the one
explicit list of them (the order is the order they run and are documented).
``build(config)`` makes the enabled ones with their configured parameters.
"""

from __future__ import annotations

from vnetdiag.analyze.detectors.base import AlertBook, Detector, Param
from vnetdiag.analyze.detectors.conntrack import ConntrackPressure
from vnetdiag.analyze.detectors.drops import DropAnomaly
from vnetdiag.analyze.detectors.guest_tx import GuestTxStall
from vnetdiag.analyze.detectors.links import LinkChanges
from vnetdiag.analyze.detectors.txstall import TxStall
from vnetdiag.model.watch import Observation, Transition, WatchConfig

DETECTORS: tuple[type[Detector], ...] = (TxStall, GuestTxStall, DropAnomaly, ConntrackPressure, LinkChanges)
BY_NAME = {d.name: d for d in DETECTORS}


def build(config: WatchConfig) -> list[Detector]:
    return [cls(config.detector(cls.name).params) for cls in DETECTORS if config.detector(cls.name).enabled]


def run_all(detectors: list[Detector], obs: Observation) -> list[Transition]:
    out: list[Transition] = []
    for d in detectors:
        out.extend(d.step(obs))
    return out


__all__ = ["DETECTORS", "BY_NAME", "AlertBook", "Detector", "Param", "build", "run_all"]
