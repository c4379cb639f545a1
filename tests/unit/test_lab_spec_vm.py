"""Topology files with QEMU guests: the test lab parses and round-trips;
misplaced VM pieces are refused naming the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vnetdiag.errors import BadInputError
from vnetdiag.lab import _spec_to_data, spec

VM_LAB = Path(__file__).parent.parent / "integration" / "vm_lab.toml"


def test_vm_lab_parses_and_round_trips():
    s = spec.load(VM_LAB)
    assert {n.name: n.kind for n in s.nodes} == {"hv1": "netns", "ns1": "netns", "ns2": "netns", "vm1": "vm",
                                                    "vm2": "vm"}
    assert s.node("vm1").memory_mb == 192 and s.node("vm1").routes == (("203.0.113.0/24", "198.51.100.1"),)
    assert [(t.node, t.name, t.master, t.guest.node, t.queues) for t in s.taps] == [("hv1", "vm1-t0", "br0", "vm1", 1)]
    assert [(m.name, m.guest.node) for m in s.macvtaps] == [("mvtap0", "vm2")]
    assert s.is_vm("vm2") and not s.is_vm("ns1")
    assert spec.parse(_spec_to_data(s), s.source) == s


_BASE = "[nodes.hv]\nbridges = ['br0']\n[nodes.v]\nkind = 'vm'\n"


@pytest.mark.parametrize(
    "toml, field, problem",
    [
        ("[nodes.v]\nkind = 'container'\n", "nodes.v.kind", "must be one of netns, vm"),
        ("[nodes.v]\nkind = 'vm'\nbridges = ['br0']\n", "nodes.v.bridges", "only the NICs"),
        ("[nodes.n]\nmemory_mb = 512\n", "nodes.n.memory_mb", "only a kind"),
        (_BASE.replace("kind = 'vm'", "kind = 'vm'\nmemory_mb = 8"), "nodes.v.memory_mb", "from 64 to 65536"),
        (_BASE + "routes = [{ to = 'nowhere', via = '198.51.100.1' }]\n", "nodes.v.routes[0].to", "not a network"),
        ("[nodes.n]\nserve = true\n", "nodes.n.serve", "only a kind = \"vm\" node"),
        (_BASE + "serve = 'yes'\n", "nodes.v.serve", "must be true or false"),
        (_BASE + "[[tap]]\nnode = 'hv'\nname = 't0'\nguest = { node = 'hv', name = 'eth0' }\n",
         "tap[0].guest.node", "is not a kind = \"vm\" node"),
        (_BASE + "[[tap]]\nnode = 'hv'\nname = 't0'\nmaster = 'br9'\nguest = { node = 'v', name = 'eth0' }\n",
         "tap[0].master", "no bridge 'br9'"),
        (_BASE + "[[tap]]\nnode = 'hv'\nname = 't0'\nqueues = 9\nguest = { node = 'v', name = 'eth0' }\n",
         "tap[0].queues", "from 1 to 8"),
        (_BASE + "[[veth]]\na = { node = 'v', name = 'eth0' }\nb = { node = 'hv', name = 'p' }\n",
         "v:eth0", "guest ends of taps and macvtaps"),
        (_BASE + "[[tap]]\nnode = 'v'\nname = 't0'\nguest = { node = 'v', name = 'eth0' }\n",
         "v:t0", "lives in a namespace node"),
    ],
)
def test_bad_vm_topologies_name_the_field(toml, field, problem):
    with pytest.raises(BadInputError) as err:
        spec.parse(tomllib.loads(toml), "t.toml")
    msg = str(err.value)
    assert msg.startswith(f"t.toml: field {field}: "), msg
    assert problem in msg, msg
