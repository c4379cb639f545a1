"""pytest plugin: the default lab (session scope) and custom labs (function scope).

    def test_ping(lab):                       # the built-in lab, faults cleared after
        lab.run("vm1", ["ping", "-c1", lab.ip("vm3")])

    def test_custom(lab_factory, lab_prefix):
        lab = lab_factory({"prefix": lab_prefix("c"), "nodes": {...}, "veth": [...]})

    def test_sysctl(global_settings, lab):    # exclusive use of global kernel settings
        ...

Tests that use these are skipped without root. The lab prefix is
$VNETDIAG_LAB_PREFIX; when it is not set, each test run gets its own,
"vt" + its pid in base 36 (set in the environment, so the commands a test runs
see it too): two runs on one machine never share a lab, and a user's "vnd" lab
is never touched. Labs of such runs whose process is gone are removed at start.
"""

from __future__ import annotations

import os
import re

import pytest

RUN_PREFIX_RE = re.compile(r"^vt([0-9a-z]{5})[0-9a-z]?$")
"""A per-run prefix and the prefixes derived from it (one more character)."""


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def run_prefix() -> str:
    """This run's lab prefix: $VNETDIAG_LAB_PREFIX, else one unique to this process."""
    return os.environ.get("VNETDIAG_LAB_PREFIX") or f"vt{_base36(os.getpid()).rjust(5, '0')}"


def derived_prefix(suffix: str) -> str:
    """A prefix for a test's own lab: this run's plus ``suffix``, so it never
    collides with another run's (lab prefixes have at most 8 characters)."""
    prefix = run_prefix() + suffix
    if len(prefix) > 8:
        raise pytest.UsageError(f"lab prefix {prefix!r} is longer than 8 characters: shorten VNETDIAG_LAB_PREFIX")
    return prefix


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: builds real network namespaces")


def _sweep_dead_runs() -> None:
    """Labs of earlier test runs (per-run prefixes) whose process is gone."""
    from vnetdiag import lab as lab_mod
    from vnetdiag.system import proc
    from vnetdiag.system.state import labs_dir
    from vnetdiag.system.undo import DeleteNetns

    names = set(os.listdir(labs_dir())) if labs_dir().is_dir() else set()
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    names |= {n.split("-", 1)[0] for n in netns if "-" in n}
    for prefix in sorted(names):
        m = RUN_PREFIX_RE.match(prefix)
        if not m or proc.start_ticks(int(m.group(1), 36)) is not None:
            continue
        lab_mod.down(prefix)
        for n in netns:
            if n.startswith(prefix + "-"):
                DeleteNetns(name=n).apply()


@pytest.fixture(scope="session")
def _lab_session():
    _need_root()
    from vnetdiag import lab as lab_mod

    prefix = run_prefix()
    _sweep_dead_runs()
    lab_mod.down(prefix)  # leftovers of an interrupted run
    from vnetdiag.lab import spec

    the_lab = lab_mod.up(spec.default(prefix))
    try:
        yield the_lab
    finally:
        failures = lab_mod.down(prefix)
        assert not failures, f"lab teardown left: {failures}"


@pytest.fixture
def lab(_lab_session):
    """The built-in lab; every fault a test adds is cleared when it ends."""
    _lab_session.clear_faults()
    yield _lab_session
    _lab_session.clear_faults()


@pytest.fixture
def lab_prefix():
    """``lab_prefix("c")``: a lab prefix of this run's own for a test's extra lab."""
    return derived_prefix


@pytest.fixture
def global_settings():
    """Exclusive use of the machine's global kernel settings (nf_conntrack_max)
    for the whole test: another test, of this run or of another run on the
    same machine, that changes one waits until this test ends. Commands the
    test runs share its hold (system/undo.py: a holder's children do not wait).
    Request it before ``lab`` so that the lab's faults are cleared first."""
    from vnetdiag.system.undo import exclusive_global_settings

    with exclusive_global_settings():
        yield


@pytest.fixture(autouse=True)
def _stable_global_settings(request):
    """Root tests run while no one else changes a global setting: a lowered
    nf_conntrack_max (another run's conntrack-full fault) would make every lab
    firewall on the machine refuse new connections. Shared: root tests of
    several runs go on side by side; a fault (exclusive) waits for them, and
    they for it. A fault in the test itself upgrades the hold for its lifetime."""
    if (request.node.get_closest_marker("root") is None or os.geteuid() != 0
            or "global_settings" in request.fixturenames):  # that one holds it exclusive from the start
        yield
        return
    from vnetdiag.system.undo import stable_global_settings

    with stable_global_settings():
        yield


@pytest.fixture
def lab_factory():
    """Build custom labs from TOML-shaped dicts; all are removed after the test."""
    _need_root()
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    made: list[str] = []

    def make(data: dict):
        s = spec.parse(data, "<test>")
        lab_mod.down(s.prefix)
        made.append(s.prefix)
        return lab_mod.up(s)

    yield make
    for prefix in made:
        failures = lab_mod.down(prefix)
        assert not failures, f"lab teardown left: {failures}"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "root: needs root and creates real network namespaces")
    # One prefix for the whole run, seen by the tests that read the variable and
    # by every command they start.
    os.environ.setdefault("VNETDIAG_LAB_PREFIX", run_prefix())
