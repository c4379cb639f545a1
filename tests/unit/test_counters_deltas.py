"""Deltas: wrap, reset, appeared/disappeared interfaces and namespaces, rates."""

import dataclasses

import pytest

from vnetdiag.analyze.deltas import counter_delta, delta
from vnetdiag.model.counters import (
    ConntrackStats, CounterSnapshot, InterfaceCounters, NetnsStats, QdiscCounters, SoftnetCpu,
)
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import IfRef, Namespace


def test_counter_delta_rules():
    assert counter_delta(10, 15) == (5, "")
    assert counter_delta(2**32 - 10, 5, 32) == (15, "wrapped")
    assert counter_delta(2**64 - 1, 3, 64) == (3, "reset")  # 64-bit: a decrease is a reset
    assert counter_delta(1000, 10, 32) == (10, "reset")  # too far back for a 32-bit wrap
    assert counter_delta(7, 7) == (0, "")


def _iface(ns, ifindex, name, **kw):
    return Interface(ref=IfRef(netns_inode=ns, ifindex=ifindex), name=name, netns_name=f"ns{ns}", kind="veth",
                     slave_kind=None, driver="veth", bus_info=None, mac=None, mtu=1500, txqlen=1000,
                     operstate="up", flags=1, carrier=True, carrier_changes=0, master_ifindex=None,
                     link_ifindex=None, link_netnsid=None, link=None, num_tx_queues=1, num_rx_queues=1,
                     num_vf=None, **kw)


def _q(**kw):
    base = dict(kind="tbf", handle="8001:", parent="root", is_class=False, bytes=0, packets=0, drops=0,
                overlimits=0, requeues=0, backlog_bytes=0, backlog_packets=0)
    return QdiscCounters(**{**base, **kw})


def _snap(t, ifaces, netns=(), softnet=()):
    inodes = sorted({i.interface.ref.netns_inode for i in ifaces} | {n.netns_inode for n in netns})
    return CounterSnapshot(taken_monotonic_s=t, taken_unix_s=t, duration_ms=1.0,
                           namespaces=tuple(Namespace(inode=i, name=f"ns{i}", path="") for i in inodes),
                           interfaces=tuple(ifaces), netns_stats=tuple(netns), softnet=tuple(softnet))


def test_interface_moves_and_rates():
    a = _snap(10.0, [InterfaceCounters(interface=_iface(1, 2, "a"), stats={"rx_dropped": 5, "rx_packets": 100},
                                       qdiscs=(_q(drops=2**32 - 1, packets=10),))])
    b = _snap(12.0, [InterfaceCounters(interface=_iface(1, 2, "a"), stats={"rx_dropped": 9, "rx_packets": 100},
                                       qdiscs=(_q(drops=3, packets=20, backlog_packets=7),))])
    d = delta(a, b)
    assert d.interval_s == pytest.approx(2.0)
    (i,) = d.interfaces
    assert i.status == "present"
    assert [(m.name, m.delta, m.rate_per_s) for m in i.stats] == [("rx_dropped", 4, 2.0)]
    (q,) = i.qdiscs
    moves = {m.name: m for m in q.moves}
    assert moves["drops"].delta == 4 and moves["drops"].note == "wrapped"
    assert moves["packets"].delta == 10 and q.backlog_packets == 7


def test_appeared_disappeared_renamed_and_namespace_gone():
    a = _snap(0.0, [InterfaceCounters(interface=_iface(1, 2, "old"), stats={"rx_packets": 1}),
                    InterfaceCounters(interface=_iface(2, 2, "gone"), stats={})],
              netns=[NetnsStats(netns_inode=2, snmp={}, snmp6={}, sockstat={}, conntrack=None)])
    b = _snap(1.0, [InterfaceCounters(interface=_iface(1, 2, "new"), stats={"rx_packets": 3}),
                    InterfaceCounters(interface=_iface(1, 3, "fresh"), stats={})],
              netns=[NetnsStats(netns_inode=3, snmp={}, snmp6={}, sockstat={}, conntrack=None)])
    d = delta(a, b)
    status = {i.name: i.status for i in d.interfaces}
    assert status == {"new": "renamed", "fresh": "appeared", "gone": "disappeared"}
    renamed = next(i for i in d.interfaces if i.name == "new")
    assert renamed.old_name == "old" and renamed.stats[0].delta == 2
    ns = {n.netns_inode: n.status for n in d.namespaces}
    assert ns == {2: "disappeared", 3: "appeared"}


def test_same_ifindex_in_two_namespaces_is_not_confused():
    a = _snap(0.0, [InterfaceCounters(interface=_iface(1, 2, "eth0"), stats={"rx_dropped": 0}),
                    InterfaceCounters(interface=_iface(2, 2, "eth0"), stats={"rx_dropped": 0})])
    b = _snap(1.0, [InterfaceCounters(interface=_iface(1, 2, "eth0"), stats={"rx_dropped": 0}),
                    InterfaceCounters(interface=_iface(2, 2, "eth0"), stats={"rx_dropped": 6})])
    moved = [i for i in delta(a, b).interfaces if i.moved()]
    assert [i.ref for i in moved] == [IfRef(netns_inode=2, ifindex=2)]


def test_netns_snmp_conntrack_softnet():
    def ns(retrans, estab, drops):
        return NetnsStats(netns_inode=1, snmp={"Tcp": {"RetransSegs": retrans, "CurrEstab": estab}}, snmp6={},
                          sockstat={}, conntrack=ConntrackStats(count=5, limit=64, per_cpu=(
                              {"drop": drops[0], "entries": 9}, {"drop": drops[1], "entries": 1})))

    def sn(dropped):
        return SoftnetCpu(cpu=0, processed=0, dropped=dropped, time_squeeze=0, received_rps=0,
                          flow_limit_count=0, backlog_len=0)
    a = _snap(0.0, [], netns=[ns(10, 5, (1, 2**32 - 2))], softnet=[sn(2**32 - 1)])
    b = _snap(1.0, [], netns=[ns(13, 2, (4, 1))], softnet=[sn(1)])
    d = delta(a, b)
    (n,) = d.namespaces
    assert [(s, m.name, m.delta) for s, m in n.snmp] == [("Tcp", "RetransSegs", 3)]  # CurrEstab is a gauge
    assert [(m.name, m.delta) for m in n.conntrack] == [("drop", 3 + 3)]
    assert d.softnet[0].moves[0].delta == 2 and d.softnet[0].moves[0].note == "wrapped"
    assert dataclasses.is_dataclass(d)
