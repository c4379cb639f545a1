"""The netlink numbers in system/rtnl.py and collect/ agree with pyroute2's tables."""

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifinfmsg.plugins.tun import tun
from pyroute2.netlink.rtnl.ifinfmsg.plugins.vxlan import vxlan
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from vnetdiag.collect import links, tc


def _index(nla_map, name):
    for i, entry in enumerate(nla_map):
        if entry[0] == name or (isinstance(entry[0], int) and entry[1] == name):
            return entry[0] if isinstance(entry[0], int) else i
    raise KeyError(name)


def test_ifla_numbers():
    for name in ("IFLA_ADDRESS", "IFLA_IFNAME", "IFLA_MTU", "IFLA_LINK", "IFLA_MASTER", "IFLA_TXQLEN",
                 "IFLA_OPERSTATE", "IFLA_LINKINFO", "IFLA_NUM_VF", "IFLA_STATS64", "IFLA_NUM_TX_QUEUES",
                 "IFLA_NUM_RX_QUEUES", "IFLA_CARRIER", "IFLA_CARRIER_CHANGES", "IFLA_LINK_NETNSID", "IFLA_IFALIAS"):
        assert getattr(links, name) == _index(ifinfmsg.nla_map, name), name


def test_vxlan_tun_tca_numbers():
    for name in ("IFLA_VXLAN_ID", "IFLA_VXLAN_GROUP", "IFLA_VXLAN_LINK", "IFLA_VXLAN_LOCAL", "IFLA_VXLAN_PORT",
                 "IFLA_VXLAN_GROUP6", "IFLA_VXLAN_LOCAL6"):
        assert getattr(links, name) == _index(vxlan.nla_map, name), name
    for name in ("IFLA_TUN_OWNER", "IFLA_TUN_TYPE", "IFLA_TUN_VNET_HDR", "IFLA_TUN_PERSIST",
                 "IFLA_TUN_MULTI_QUEUE", "IFLA_TUN_NUM_QUEUES"):
        assert getattr(links, name) == _index(tun.nla_map, name), name
    assert tc.TCA_KIND == _index(tcmsg.nla_map, "TCA_KIND")
    assert tc.TCA_STATS2 == _index(tcmsg.nla_map, "TCA_STATS2")


def test_stats64_field_order_matches_pyroute2_prefix():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfbase
    pyroute2_fields = [f[0] for f in ifinfbase.ifstats64.fields]
    assert list(links.STATS64_FIELDS[: len(pyroute2_fields)]) == pyroute2_fields
