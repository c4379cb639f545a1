"""The probe's minimal TCP MIB reader, on /proc/net/snmp and netstat recorded here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnetdiag.probe import tcpstats

HERE = Path(__file__).parent / "probe"


def test_parse_recorded_snmp_and_netstat():
    tcp = tcpstats.parse_mib((HERE / "snmp.txt").read_text(), "Tcp")
    assert tcp["RtoMin"] == 200 and tcp["RtoMax"] == 120000
    assert "RetransSegs" in tcp and tcp["MaxConn"] == -1
    ext = tcpstats.parse_mib((HERE / "netstat.txt").read_text(), "TcpExt")
    assert "TCPSynRetrans" in ext and "DelayedACKs" in ext


def test_read_mib_from_a_directory(tmp_path):
    (tmp_path / "snmp").write_text((HERE / "snmp.txt").read_text())
    (tmp_path / "netstat").write_text((HERE / "netstat.txt").read_text())
    snap = tcpstats.read_mib(tmp_path)
    tcp = tcpstats.parse_mib((HERE / "snmp.txt").read_text(), "Tcp")
    assert snap.retrans_segs == tcp["RetransSegs"]


def test_tcp_info_layout_on_a_real_socket():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()) as c:
        raw = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        info = tcpstats.parse_tcp_info(raw)
        assert raw[0] == 1  # TCP_ESTABLISHED: the layout starts where we think
        assert info.total_retrans == 0 and info.backoff == 0
    with pytest.raises(ValueError):
        tcpstats.parse_tcp_info(raw[:50])
