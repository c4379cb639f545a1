"""The agent protocol without I/O: lines, hello checks, the request bookkeeping, and
records crossing it unchanged (recorded real records, not invented ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnetdiag import __version__
from vnetdiag.fleet import protocol as proto
from vnetdiag.model.plain import from_plain, to_plain


def test_a_request_and_its_answer_round_trip():
    conv = proto.Conversation()
    req, line = conv.request("snapshot", rules=False)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert proto.decode(line) == req
    answer = proto.decode(proto.encode(proto.Result(id=req.id, op="snapshot", value={"x": [1, 2]})))
    assert conv.answer(answer).value == {"x": [1, 2]}
    assert not conv.pending
    with pytest.raises(proto.ProtocolError):
        conv.answer(answer)  # answered already


def test_operations_are_a_closed_list():
    with pytest.raises(ValueError):
        proto.Conversation().request("exec", argv=["sh"])


def test_a_banner_is_not_the_protocol():
    with pytest.raises(proto.ProtocolError) as err:
        proto.decode(b"Welcome to hv1!\n")
    assert "login banner" in err.value.hint


def test_hello_of_another_version_names_both():
    hello = proto.Hello(protocol=proto.PROTOCOL_VERSION + 1, version="9.9.9", host="hv2", pid=1)
    with pytest.raises(proto.VersionMismatch) as err:
        proto.check_hello(proto.decode(proto.encode(hello)), where="hv2")
    assert err.value.exit_status == 3
    assert f"protocol {proto.PROTOCOL_VERSION + 1} (vnetdiag 9.9.9)" in err.value.message
    assert f"protocol {proto.PROTOCOL_VERSION} (vnetdiag {__version__})" in err.value.message
    ok = proto.Hello(protocol=proto.PROTOCOL_VERSION, version=__version__, host="hv2", pid=1, scope=("vm*",))
    assert proto.check_hello(proto.decode(proto.encode(ok)), where="hv2").scope == ("vm*",)


def test_an_error_answer_keeps_its_exit_status_and_names_the_host():
    from vnetdiag.errors import MissingFeatureError, VnetdiagError

    msg = proto.decode(proto.encode(proto.error_of(4, MissingFeatureError("no bpftrace", hint="apt-get install bpftrace"))))
    with pytest.raises(VnetdiagError) as err:
        proto.raise_error(msg, where="hv3")
    assert (err.value.message, err.value.hint, err.value.exit_status) == ("hv3: no bpftrace", "apt-get install bpftrace", 3)


BUNDLES = sorted(Path(__file__).parents[1].joinpath("golden", "bundles").rglob("*.json.gz"))


@pytest.mark.parametrize("path", BUNDLES[:4], ids=lambda p: p.name)
def test_recorded_bundle_records_cross_the_protocol_unchanged(path):
    """Counter snapshots and drop traces recorded on this machine, through encode/decode."""
    from vnetdiag.collect import bundlefile

    bundle = bundlefile.read(path)
    line = proto.encode(proto.Result(id=1, op="snapshot", value=to_plain(bundle.after)))
    back = from_plain(type(bundle.after), proto.decode(line).value)
    assert back == bundle.after
    if bundle.drops is not None:
        value = proto.decode(proto.encode(proto.Result(id=2, op="trace_stop", value=to_plain(bundle.drops)))).value
        assert from_plain(type(bundle.drops), value).tallies == bundle.drops.tallies
