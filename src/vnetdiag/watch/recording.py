"""Counter snapshots to and from JSON lines (gzip), so detectors can be replayed
on recorded real snapshots (tests/golden/watch/) and operators can send a
recording of a misbehaving host for offline analysis.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.plain import from_plain, to_plain

SCHEMA = "vnetdiag.snapshots/1"
def dump(path: str | Path, snapshots: list[CounterSnapshot], *, note: str = "") -> None:
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"schema": SCHEMA, "note": note}) + "\n")
        for s in snapshots:
            f.write(json.dumps(to_plain(s), separators=(",", ":")) + "\n")


def load(path: str | Path) -> tuple[dict, list[CounterSnapshot]]:
    with gzip.open(path, "rt") as f:
        header = json.loads(f.readline())
        if header.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a {SCHEMA} recording")
        return header, [from_plain(CounterSnapshot, json.loads(line)) for line in f if line.strip()]
