import os
import sys
from pathlib import Path

import pytest

# Tests are imported by path (--import-mode=importlib, so unit/ and integration/
# may both have a test_watch.py); their shared helper modules live beside them.
_HERE = Path(__file__).parent
for _dir in (_HERE, _HERE / "integration"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


@pytest.fixture
def cli():
    """Run the vnetdiag command as a user would; returns CompletedProcess."""
    import subprocess

    def run(*args, timeout=120, env=None, **kw):
        return subprocess.run([VNETDIAG, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, **kw)

    return run
