"""The alert/action journal: JSON lines, each written with one write() and
fsync'ed, so a crash or SIGKILL loses at most the line being written.

Line types ("type"): start, alert (raised/cleared/event), action (an attempt
with the subject's counters before), outcome (counters after, and whether the
condition cleared), exhausted (no attempts left), error (a failed cycle), stop.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from vnetdiag.errors import BadInputError

SCHEMA = "vnetdiag.watch-journal/1"


class AlertJournal:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._fd: int | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                raise BadInputError(f"cannot open journal {self.path}: {exc.strerror}",
                                    hint="give a writable path with --journal") from None

    def write(self, line_type: str, /, **fields) -> dict:
        entry = {"schema": SCHEMA, "type": line_type, "at_unix_s": round(time.time(), 3), **fields}
        if self._fd is not None:
            os.write(self._fd, (json.dumps(entry, default=_default, sort_keys=False) + "\n").encode())
            os.fsync(self._fd)
        return entry

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _default(obj):
    try:
        return asdict(obj)
    except TypeError:
        return str(obj)


def read(path: str | Path) -> list[dict]:
    """Every complete line of a journal (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
