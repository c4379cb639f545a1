import os
import sys
from pathlib import Path

import pytest

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


@pytest.fixture
def cli():
    """Run the vnetdiag command as a user would; returns CompletedProcess."""
    import subprocess

    def run(*args, timeout=120, env=None, **kw):
        return subprocess.run([VNETDIAG, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, **kw)

    return run
