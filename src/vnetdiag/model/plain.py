"""Records to plain JSON-able values and back, by their type hints.

Every recorded file (counter snapshots, diagnose bundles) goes through these
two functions, so a record type is its own schema: a field added with a
default keeps old files readable, a field read from a file that the type no
longer has is ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing

_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def to_plain(obj):
    """Dataclasses to dicts, tuples to lists, recursively (enums and the rest as they are)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, bytes):  # packet heads: hex, JSON has no bytes
        return obj.hex()
    return obj


def from_plain(tp, value):
    """The value of type ``tp`` that ``to_plain`` made ``value`` from."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_plain(args[0], value) if len(args) == 1 else value
    if tp is bytes and isinstance(value, str):
        return bytes.fromhex(value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: from_plain(hints[k], v) for k, v in value.items() if k in hints})
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in value)
        return tuple(from_plain(a, v) for a, v in zip(args, value))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        # JSON object keys are strings: give int keys (per-CPU maps) their type back.
        key = int if kt is int else (lambda k: k)
        return {key(k): from_plain(vt, v) for k, v in value.items()}
    return value
