"""Counter snapshots to and from JSON lines (gzip), so detectors can be replayed
on recorded real snapshots (tests/golden/watch/) and operators can send a
recording of a misbehaving host for offline analysis.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import types
import typing
from pathlib import Path

from vnetdiag.model.counters import CounterSnapshot

SCHEMA = "vnetdiag.snapshots/1"
_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def _build(tp, value):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: _build(hints[k], v) for k, v in value.items() if k in hints})
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value))
    if origin is dict:
        _k, vt = typing.get_args(tp)
        return {k: _build(vt, v) for k, v in value.items()}
    return value


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
        return header, [_build(CounterSnapshot, json.loads(line)) for line in f if line.strip()]
