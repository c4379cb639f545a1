"""pytest plugin: the default lab (session scope) and custom labs (function scope).

    def test_ping(lab):                       # the built-in lab, faults cleared after
        lab.run("vm1", ["ping", "-c1", lab.ip("vm3")])

    def test_custom(lab_factory):
        lab = lab_factory({"prefix": "t1", "nodes": {...}, "veth": [...]})

Tests that use these are skipped without root. The lab prefix is
$VNETDIAG_LAB_PREFIX, or "vnt" so a test run never touches a user's "vnd" lab.
"""

from __future__ import annotations

import os

import pytest


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: builds real network namespaces")


@pytest.fixture(scope="session")
def _lab_session():
    _need_root()
    from vnetdiag import lab as lab_mod

    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "vnt")
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
