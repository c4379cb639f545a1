"""Topology files: the built-in one parses; malformed ones name file, field, problem."""

from __future__ import annotations

import pytest

from vnetdiag.errors import BadInputError
from vnetdiag.lab import _spec_to_data, spec


def test_default_lab_has_what_the_issue_requires():
    s = spec.default()
    roles = {n.name: n.role for n in s.nodes}
    assert roles["hv1"] == roles["hv2"] == "hypervisor" and roles["fabric"] == "switch"
    assert s.guests == ("vm1", "vm2", "vm3")
    assert s.node("hv1").firewall
    assert {(x.node, x.vni) for x in s.vxlans} == {("hv1", 100), ("hv2", 100)}
    assert [(m.node, m.guest.node) for m in s.macvtaps] == [("hv1", "vm2")]


def test_spec_round_trips_through_the_state_file_shape():
    s = spec.default("abc")
    assert spec.parse(_spec_to_data(s)) == s


@pytest.mark.parametrize(
    "toml, field, problem",
    [
        ('prefix = "Bad Prefix"\n[nodes.a]\n', "prefix", "lowercase"),
        ("[nodes.a]\nrole = 'router'\n", "nodes.a.role", "must be one of"),
        ("[nodes.a]\n[[veth]]\na = { node = 'a', name = 'x' }\n", "veth[0].b", "missing"),
        ("[nodes.a]\n[[veth]]\na = { node = 'a', name = 'x' }\nb = { node = 'zz', name = 'y' }\n",
         "veth[0].b.node", "no node 'zz'"),
        ("[nodes.a]\n[[veth]]\na = { node = 'a', name = 'x', address = '10.0.0.300/24' }\nb = { node = 'a', name = 'y' }\n",
         "veth[0].a.address", "not an address"),
        ("[nodes.a]\n[[veth]]\na = { node = 'a', name = 'averyveryverylongname' }\nb = { node = 'a', name = 'y' }\n",
         "veth[0].a.name", "not a valid interface name"),
        ("[nodes.a]\n[[veth]]\na = { node = 'a', name = 'x', master = 'br0' }\nb = { node = 'a', name = 'y' }\n",
         "veth[0].a.master", "no bridge 'br0'"),
        ("[nodes.a]\ncolour = 'red'\n", "nodes.a.colour", "unknown key"),
        ("[nodes.a]\n[[vxlan]]\nnode='a'\nname='vx0'\nvni=5\nunderlay='eth9'\nlocal='192.0.2.1'\nremotes=['192.0.2.2']\n",
         "underlay", "no interface 'eth9'"),
        ("nodes = 3\n", "nodes", "must be a table"),
        ("[nodes.a\n", "", "not valid TOML"),
    ],
)
def test_malformed_topology_names_file_field_and_problem(tmp_path, toml, field, problem):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(BadInputError) as info:
        spec.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert field in message and problem in message
    assert "\n" not in message


def test_malformed_topology_from_the_cli_is_exit_2_and_one_line(tmp_path, cli):
    path = tmp_path / "bad.toml"
    path.write_text("[nodes.hv1]\nrole = 'router'\n")
    r = cli("lab", "up", "--topology", str(path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "nodes.hv1.role" in lines[0]
    assert "Traceback" not in r.stderr
    r = cli("lab", "up", "--topology", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no such topology file" in r.stderr
