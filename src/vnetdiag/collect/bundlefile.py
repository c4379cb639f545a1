"""Diagnose bundles to and from files (gzip JSON): what ``diagnose --save-bundle``
writes and ``diagnose --replay`` and the tests read back."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from vnetdiag.errors import BadInputError
from vnetdiag.model.bundle import SCHEMA, Bundle
from vnetdiag.model.plain import from_plain, to_plain


def write(path: str | Path, bundle: Bundle) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(to_plain(bundle), f, separators=(",", ":"))


def read(path: str | Path) -> Bundle:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BadInputError(f"no bundle at {path}", hint="write one with vnetdiag diagnose --save-bundle FILE") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not a diagnose bundle ({exc})",
                            hint="give a file written by vnetdiag diagnose --save-bundle") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInputError(f"{path} is not a {SCHEMA} document (schema: {got})",
                            hint="give a file written by vnetdiag diagnose --save-bundle")
    try:
        return from_plain(Bundle, data)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise BadInputError(f"{path}: a damaged bundle ({exc})", hint="record it again") from None
