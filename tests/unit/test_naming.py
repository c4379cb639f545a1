"""The namespace identity parser and matcher: every form a user gives, and the bad ones."""

from __future__ import annotations

import pytest

from vnetdiag.model.namespaces import Holder, Namespace, label, matches, parse_spec, split_endpoint

HOST = Namespace(inode=4026531840, name="host", path="/proc/1/ns/net", is_host=True)
NAMED = Namespace(inode=4026532301, name="vnt-vm1", path="/run/netns/vnt-vm1")
UNNAMED = Namespace(inode=4026532317, name=None, path="/proc/26690/ns/net",
                    holders=(Holder(pid=26690, comm="conmon"), Holder(pid=26693, comm="nginx")))
BARE = Namespace(inode=4026532400, name=None, path="/var/run/docker/netns/abc")


@pytest.mark.parametrize("text,form,value", [
    ("host", "host", "host"), ("init", "host", "init"),
    ("vnt-vm1", "name", "vnt-vm1"), ("vnt-*", "glob", "vnt-*"), ("vm[12]", "glob", "vm[12]"),
    ("4026532317", "number", 4026532317), ("26690", "number", 26690),
    ("netns:4026532317", "inode", 4026532317), ("pid:26690", "pid", 26690),
    ("pid:26690 (conmon)", "pid", 26690), ("/proc/26693/ns/net", "path", "/proc/26693/ns/net"),
    ("./ns", "path", "./ns"), (" vnt-vm1 ", "name", "vnt-vm1"),
])
def test_parse_every_form(text, form, value):
    spec = parse_spec(text)
    assert (spec.form, spec.value) == (form, value)


@pytest.mark.parametrize("text", ["", "  ", "pid:", "pid:abc", "pid:0", "netns:", "netns:x1", "netns:-4"])
def test_parse_refuses_malformed(text):
    with pytest.raises(ValueError):
        parse_spec(text)


def test_matching_by_identity_never_by_label():
    assert matches(parse_spec("host"), HOST) and not matches(parse_spec("host"), NAMED)
    assert matches(parse_spec("vnt-vm1"), NAMED) and not matches(parse_spec("vnt-vm"), NAMED)
    assert matches(parse_spec("vnt-*"), NAMED) and not matches(parse_spec("vnt-*"), UNNAMED)
    assert matches(parse_spec("netns:4026532317"), UNNAMED) and not matches(parse_spec("netns:4026532317"), NAMED)
    # A bare number in nsfs's inode range is an inode; below it, a PID (looked up by the caller).
    assert matches(parse_spec("4026532317"), UNNAMED)
    assert not matches(parse_spec("26690"), UNNAMED)
    assert matches(parse_spec("26690"), UNNAMED, pid_inode=4026532317)
    assert matches(parse_spec("pid:26693"), UNNAMED, pid_inode=4026532317)
    assert not matches(parse_spec("pid:26693"), NAMED, pid_inode=4026532317)
    assert matches(parse_spec("/var/run/docker/netns/abc"), BARE, path_inode=4026532400)
    # Globs see the label of an unnamed namespace too: "pid:*" picks every held one.
    assert matches(parse_spec("pid:*"), UNNAMED) and not matches(parse_spec("pid:*"), NAMED)
    assert matches(parse_spec("*conmon*"), UNNAMED)


def test_labels():
    assert label(HOST) == "host" and label(NAMED) == "vnt-vm1"
    assert label(UNNAMED) == "pid:26690 (conmon)"
    assert label(BARE) == "netns:4026532400"
    assert parse_spec(label(UNNAMED)).value == 26690  # a label copied from the output names it again


@pytest.mark.parametrize("text,ns,addr", [
    ("vm1", "vm1", None), ("vm1:10.0.0.2", "vm1", "10.0.0.2"), ("vm1:2001:db8::1", "vm1", "2001:db8::1"),
    ("vm1:[2001:db8::1]", "vm1", "2001:db8::1"), ("pid:42:10.0.0.2", "pid:42", "10.0.0.2"),
    ("netns:4026532317:fd00::2", "netns:4026532317", "fd00::2"), ("pid:42", "pid:42", None),
    ("/proc/42/ns/net:10.0.0.2", "/proc/42/ns/net", "10.0.0.2"), ("vm1@10.0.0.2", "vm1", "10.0.0.2"),
    # IPv6 as a user writes it, canonical as the kernel reports it (the path walk compares them).
    ("c:fd00:78:0::1", "c", "fd00:78::1"), ("pid:42:FD00:0:0:0::2", "pid:42", "fd00::2"),
])
def test_endpoints(text, ns, addr):
    assert split_endpoint(text) == (ns, addr)


@pytest.mark.parametrize("text", ["vm1:nonsense", "vm1:10.0.0.300", "pid:42:x", "vm1@", "vm1:"])
def test_endpoints_refuse_bad_addresses(text):
    with pytest.raises(ValueError):
        split_endpoint(text)
