"""Where vnetdiag keeps its state: journals of kernel changes, lab descriptions.

The default lives on /run (a tmpfs), so it disappears exactly when the kernel
state it describes disappears: at reboot. Tests and parallel users point
``VNETDIAG_STATE_DIR`` elsewhere to stay out of each other's way.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/run/vnetdiag")


def state_dir() -> Path:
    """The state directory, from ``VNETDIAG_STATE_DIR`` or the default."""
    return Path(os.environ.get("VNETDIAG_STATE_DIR", DEFAULT_STATE_DIR))


def journals_dir() -> Path:
    return state_dir() / "journals"


def labs_dir() -> Path:
    return state_dir() / "labs"
