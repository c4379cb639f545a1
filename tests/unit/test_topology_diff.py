"""Topology document diff and endpoint parsing (no kernel needed)."""

import pytest

from vnetdiag.errors import BadInputError, NotFoundError
from vnetdiag.topology.diff import check, diff
from vnetdiag.topology.path import parse_endpoint


def _doc(port_of_mac, extra_iface=False):
    nodes = [{"id": "netns:1", "type": "netns", "netns_inode": 1, "name": "hv"},
             {"id": "1:2", "type": "interface", "netns_inode": 1, "name": "br0"},
             {"id": "1:3", "type": "interface", "netns_inode": 1, "name": "p1"},
             {"id": "1:4", "type": "interface", "netns_inode": 1, "name": "p2"}]
    if extra_iface:
        nodes.append({"id": "1:5", "type": "interface", "netns_inode": 1, "name": "p3"})
    return {"schema": "vnetdiag.topology/1", "nodes": nodes,
            "edges": [{"source": "1:3", "target": "1:2", "type": "master"}],
            "fdb": [{"device": port_of_mac, "bridge": "1:2", "mac": "52:54:00:00:00:01", "local": False}]}


def test_migration_shows_as_moved_mac_and_new_interface():
    d = diff(_doc("1:3"), _doc("1:4", extra_iface=True))
    assert d.moved == ("52:54:00:00:00:01 on hv/br0: hv/p1 -> hv/p2",)
    assert d.appeared == ("hv/p3",) and not d.disappeared
    assert diff(_doc("1:3"), _doc("1:3")).empty()


@pytest.mark.parametrize("doc", [[], {"schema": "vnetdiag.counters/1"}, {"schema": "vnetdiag.topology/1"}])
def test_check_refuses_other_documents(doc):
    with pytest.raises(BadInputError):
        check(doc, "old.json")


def test_parse_endpoint():
    assert parse_endpoint("vnd-vm1") == ("vnd-vm1", None)
    assert parse_endpoint("vnd-vm1:198.51.100.1") == ("vnd-vm1", "198.51.100.1")
    assert parse_endpoint("vm:2001:db8::1") == ("vm", "2001:db8::1")
    with pytest.raises(NotFoundError):
        parse_endpoint("vm:nonsense")
