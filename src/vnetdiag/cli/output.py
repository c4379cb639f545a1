"""What commands use to write: the terminal console and the --json document."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
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


ERROR_SCHEMA = "vnetdiag.error/1"

PIPE_WIDTH = 250
"""Width of tables written to a pipe or file when $COLUMNS does not say: wide
enough that each row stays one line for grep."""

WIDE_WIDTH = 1000
"""--wide: tables at their natural width (rich tables do not stretch to fill it)."""


def error_document(message: str, hint: str | None, exit_status: int) -> dict:
    """What ``--json`` prints on stdout when a command fails."""
    return {"schema": ERROR_SCHEMA, "error": message, "hint": hint, "exit_status": exit_status}


def output_width(*, is_terminal: bool, wide: bool, environ=os.environ) -> int | None:
    """The width tables are fitted to; None lets rich ask the terminal.

    --wide wins; then $COLUMNS (for a pipe too: ``COLUMNS=80 vnetdiag ... | less``);
    a terminal's own size; a pipe without $COLUMNS gets PIPE_WIDTH."""
    if wide:
        return WIDE_WIDTH
    columns = environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if is_terminal else PIPE_WIDTH


class Output:
    """Wraps the terminal so commands do not each decide how to print."""

    def __init__(self, *, json_mode: bool, wide: bool = False, stream=None, err_stream=None) -> None:
        self.json_mode = json_mode
        self.wide = wide
        self.stream = stream or sys.stdout
        self.err_stream = err_stream or sys.stderr
        self._console = None

    @property
    def console(self):
        """A rich console on stdout (created lazily: rich is slow to import)."""
        if self._console is None:
            from rich.console import Console

            # emoji=False: rich would turn a MAC's ":ab:" into an emoji.
            self._console = Console(file=self.stream, highlight=False, soft_wrap=True, emoji=False)
            width = output_width(is_terminal=self._console.is_terminal, wide=self.wide)
            if width is not None:
                self._console.width = width
        return self._console

    def error(self, doc: dict) -> None:
        """A failure: one line on stderr; with --json also the error document on stdout."""
        hint = f" (hint: {doc['hint']})" if doc.get("hint") else ""
        self.info(f"vnetdiag: {doc['error']}{hint}")
        if self.json_mode:
            try:
                self.document(doc)
            except BrokenPipeError:
                pass

    def document(self, doc: dict) -> None:
        """Print a result document: only with --json (the text view is the command's)."""
        self.stream.write(to_json(doc) + "\n")
        self.stream.flush()

    def info(self, text: str) -> None:
        """Progress and notes: to stderr, so --json stdout stays a clean document."""
        self.err_stream.write(text + "\n")
        self.err_stream.flush()
