"""Hosts from Ansible inventories (INI and YAML) and ssh destinations."""

from __future__ import annotations

import pytest

from vnetdiag.errors import BadInputError, NotFoundError
from vnetdiag.fleet import hosts
from vnetdiag.fleet.transport import SshTransport

INI = """\
# hypervisors of dc1
[hypervisors]
hv1 ansible_host=192.0.2.11 ansible_user=root
hv[2:3] ansible_user=ops ansible_port=2222
[hypervisors:vars]
vnetdiag_command=/opt/vnetdiag/bin/vnetdiag
vnetdiag_netns=vm-*,br-*
[gateways]
gw01 ansible_host=192.0.2.1 ansible_ssh_common_args='-o ProxyJump=bastion -o "ProxyCommand=nc %h %p"' vnetdiag_role=edge
[dc1:children]
hypervisors
gateways
[dc1:vars]
vnetdiag_command=/usr/local/bin/vnetdiag
ansible_ssh_private_key_file=~/.ssh/dc1
"""

YAML = """\
all:
  vars:
    ansible_user: root
  children:
    hypervisors:
      vars:
        vnetdiag_netns: [vm-*, br-*]
      hosts:
        hv1: {ansible_host: 192.0.2.11}
        hv2:
"""


def test_ini_groups_vars_children_and_ranges():
    got = hosts.parse_ini(INI)
    assert sorted(got) == ["gw01", "hv1", "hv2", "hv3"]
    hv1 = got["hv1"]
    assert hv1.destination == "root@192.0.2.11"
    # The inner group's vars win over its parent's; the parent's key file still applies.
    assert hv1.command == "/opt/vnetdiag/bin/vnetdiag"
    assert hv1.netns == ("vm-*", "br-*")
    assert hv1.ssh_options == ("-i", "~/.ssh/dc1")
    assert hv1.role == "hypervisors"
    assert (got["hv3"].destination, got["hv3"].port) == ("ops@hv3", 2222)
    gw = got["gw01"]
    assert gw.command == "/usr/local/bin/vnetdiag"
    assert gw.ssh_options[-4:] == ("-o", "ProxyJump=bastion", "-o", "ProxyCommand=nc %h %p")
    assert gw.role == "edge"


def test_yaml_inventory():
    got = hosts.parse_yaml(YAML)
    assert sorted(got) == ["hv1", "hv2"]
    assert got["hv1"].destination == "root@192.0.2.11" and got["hv2"].destination == "root@hv2"
    assert got["hv2"].netns == ("vm-*", "br-*")


def test_ssh_argv_runs_the_agent_scoped():
    h = hosts.parse_ini(INI)["hv2"]
    argv = SshTransport(h).argv()
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:] == ["ops@hv2", "--", "/opt/vnetdiag/bin/vnetdiag agent --netns 'vm-*' --netns 'br-*'"]


def test_vnetdiag_command_may_be_words_such_as_sudo():
    h = hosts.parse_ini("hv1 ansible_user=ops vnetdiag_command='sudo -n /opt/vnetdiag/bin/vnetdiag'\n")["hv1"]
    assert SshTransport(h).argv()[-1] == "sudo -n /opt/vnetdiag/bin/vnetdiag agent"


def test_host_endpoint_forms():
    inv = hosts.parse_ini(INI)
    h, ep = hosts.split_host_endpoint("hv1:vm-a:10.0.0.1", inv)
    assert (h.name, ep) == ("hv1", "vm-a:10.0.0.1")
    h, ep = hosts.split_host_endpoint("root@203.0.113.9:vm-b", None)
    assert (h.destination, ep) == ("root@203.0.113.9", "vm-b")
    assert hosts.split_host_endpoint("lab:vm1", inv) is None  # a lab node form stays local
    assert hosts.split_host_endpoint("vm1", None) is None
    with pytest.raises(NotFoundError):
        hosts.resolve("hv9", inv)


def test_bad_inventories_say_where():
    with pytest.raises(BadInputError, match=r"inventory:2: expected NAME=VALUE"):
        hosts.parse_ini("[a]\nhv1 novalue\n")
    with pytest.raises(BadInputError, match="unknown section kind"):
        hosts.parse_ini("[a:hostz]\n")
    with pytest.raises(BadInputError, match="not YAML"):
        hosts.parse_yaml("all: [unclosed\n")
