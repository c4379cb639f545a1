"""Parsers and decoders on inputs recorded from this machine (tests/golden/counters)."""

import json
import struct
from pathlib import Path

from vnetdiag.collect import links, procnet, tc
from vnetdiag.collect.snapshot import split_queue_name

G = Path(__file__).parent / "counters"


def _messages(name):
    data = (G / name).read_bytes()
    off = 0
    while off < len(data):
        (n,) = struct.unpack_from("=I", data, off)
        yield data[off + 4 : off + 4 + n]
        off += 4 + n


def test_snmp_and_netstat_sections():
    snmp = procnet.parse_snmp((G / "snmp").read_text())
    procnet.parse_snmp((G / "netstat").read_text(), snmp)
    assert {"Ip", "Icmp", "Tcp", "Udp", "TcpExt", "IpExt"} <= set(snmp)
    # Values land under their own names: the recorded file says MaxConn -1.
    assert snmp["Tcp"]["MaxConn"] == -1
    text = (G / "snmp").read_text().splitlines()
    names, values = text[0].split()[1:], text[1].split()[1:]
    assert snmp["Ip"] == {n: int(v) for n, v in zip(names, values)}
    assert "TCPTimeouts" in snmp["TcpExt"]


def test_snmp6_sockstat():
    s6 = procnet.parse_snmp6((G / "snmp6").read_text())
    assert s6["Ip6InReceives"] >= 0 and len(s6) > 50
    ss = procnet.parse_sockstat((G / "sockstat").read_text())
    procnet.parse_sockstat((G / "sockstat6").read_text(), ss)
    assert set(ss["TCP"]) == {"inuse", "orphan", "tw", "alloc", "mem"}
    assert "TCP6" in ss and ss["FRAG"]["memory"] == 0


def test_conntrack_stat_names_from_header():
    rows = procnet.parse_conntrack_stat((G / "stat_nf_conntrack").read_text())
    header = (G / "stat_nf_conntrack").read_text().split("\n", 1)[0].split()
    assert len(rows) == 2  # two CPUs on the recording machine
    assert list(rows[0]) == header
    assert {"insert_failed", "drop", "early_drop", "search_restart"} <= set(rows[0])


def test_softnet_columns_and_cpu():
    cpus = procnet.parse_softnet((G / "softnet_stat").read_text())
    lines = (G / "softnet_stat").read_text().splitlines()
    assert [c.cpu for c in cpus] == [0, 1]
    assert cpus[0].processed == int(lines[0].split()[0], 16)
    assert cpus[1].processed == int(lines[1].split()[0], 16)
    assert all(c.dropped == 0 for c in cpus)


def test_link_dump_matches_iproute2():
    ip = {d["ifname"]: d for d in json.loads((G / "ip_link.json").read_text())}
    decoded = [links.decode_link(p) for p in _messages("links.nl")]
    assert {d.name for d in decoded} == set(ip)
    for d in decoded:
        ref = ip[d.name]
        assert d.ifindex == ref["ifindex"]
        assert d.mtu == ref["mtu"] and d.txqlen == ref.get("txqlen", d.txqlen)
        assert (d.kind or None) == ref.get("linkinfo", {}).get("info_kind")
        rx, tx = ref["stats64"]["rx"], ref["stats64"]["tx"]
        assert d.stats["rx_packets"] == rx["packets"] and d.stats["tx_bytes"] == tx["bytes"]
        assert d.stats["rx_dropped"] == rx["dropped"] and d.stats["tx_dropped"] == tx["dropped"]
        assert d.stats["rx_over_errors"] == rx["over_errors"]
        assert d.stats["rx_nohandler"] == rx.get("nohandler", 0)  # ip omits it when zero
        assert d.stats["rx_missed_errors"] == rx["missed_errors"]
        assert d.stats["tx_carrier_errors"] == tx["carrier_errors"]
        assert len(d.stats) >= 24
        if d.kind == "vxlan":
            data = ref["linkinfo"]["info_data"]
            assert d.vxlan.vni == data["id"] and d.vxlan.port == data["port"]
            assert d.vxlan.local == data.get("local")
        if "link_netnsid" in ref:
            assert d.link_netnsid == ref["link_netnsid"]
        if "master" in ref:
            assert d.master == ip[ref["master"]]["ifindex"]


def test_qdisc_dump_matches_tc():
    ref = json.loads((G / "tc_qdisc.json").read_text())
    ifindex = {d["ifname"]: d["ifindex"] for d in json.loads((G / "ip_link.json").read_text())}
    got = {(i, q.handle, q.kind): q for i, q in (tc.decode(p, is_class=False) for p in _messages("qdiscs.nl"))}
    # vnetdiag also asks for the kernel's invisible qdiscs (tbf's inner bfifo), tc does not.
    assert len(got) >= len(ref)
    for r in ref:
        q = got[(ifindex[r["dev"]], r["handle"], r["kind"])]
        assert (q.kind, q.handle) == (r["kind"], r["handle"])
        assert (q.bytes, q.packets, q.drops, q.overlimits, q.requeues) == (
            r["bytes"], r["packets"], r["drops"], r["overlimits"], r["requeues"])
        assert (q.backlog_bytes, q.backlog_packets) == (r["backlog"], r["qlen"])
    assert any(q.kind == "tbf" and q.packets > 0 for q in got.values())


def test_queue_names_become_labels():
    assert split_queue_name("rx_queue_0_xdp_packets") == ("rx", 0, "xdp_packets")
    assert split_queue_name("rx0_drops") == ("rx", 0, "drops")
    assert split_queue_name("tx-3.tx_packets") == ("tx", 3, "tx_packets")
    assert split_queue_name("rx_drops") is None
    assert split_queue_name("rx_1024_to_1518_packets") is None
    assert split_queue_name("peer_ifindex") is None
