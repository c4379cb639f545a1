"""What commands use to write: the terminal console and the --json document."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from pathlib import Path
from typing import Any


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def to_json(doc: Any) -> str:
    return json.dumps(doc, default=_default, indent=2, sort_keys=False)


class Output:
    """Wraps the terminal so commands do not each decide how to print."""

    def __init__(self, *, json_mode: bool, stream=None, err_stream=None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stdout
        self.err_stream = err_stream or sys.stderr
        self._console = None

    @property
    def console(self):
        """A rich console on stdout (created lazily: rich is slow to import)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)
            if not self._console.is_terminal:
                self._console.width = 140  # files and pipes: tables wide enough to read
        return self._console

    def document(self, doc: dict) -> None:
        """Print a result document: only with --json (the text view is the command's)."""
        self.stream.write(to_json(doc) + "\n")
        self.stream.flush()

    def info(self, text: str) -> None:
        """Progress and notes: to stderr, so --json stdout stays a clean document."""
        self.err_stream.write(text + "\n")
        self.err_stream.flush()
