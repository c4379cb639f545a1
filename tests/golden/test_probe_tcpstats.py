"""The probe's minimal TCP MIB reader, on /proc/net/snmp and netstat recorded here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnetdiag.probe import tcpstats

HERE = Path(__file__).parent / "probe"


def test_recorded_files_have_the_counters_the_probe_reads():
    text = (HERE / "snmp.txt").read_text() + (HERE / "netstat.txt").read_text()
    assert " RetransSegs " in text and " TCPSynRetrans " in text


def test_read_mib_from_a_directory(tmp_path):
    (tmp_path / "snmp").write_text((HERE / "snmp.txt").read_text())
    (tmp_path / "netstat").write_text((HERE / "netstat.txt").read_text())
    snap = tcpstats.read_mib(tmp_path)
    snmp = (HERE / "snmp.txt").read_text().splitlines()
    names, values = [ln.split() for ln in snmp if ln.startswith("Tcp:")]
    assert snap.retrans_segs == int(values[names.index("RetransSegs")])
    ext = (HERE / "netstat.txt").read_text().splitlines()
    names, values = [ln.split() for ln in ext if ln.startswith("TcpExt:")]
    assert snap.syn_retrans == int(values[names.index("TCPSynRetrans")])


def test_tcp_info_layout_on_a_real_socket():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()) as c:
        raw = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        info = tcpstats.parse_tcp_info(raw)
        assert raw[0] == 1  # TCP_ESTABLISHED: the layout starts where we think
        assert info.total_retrans == 0 and info.backoff == 0
    with pytest.raises(ValueError):
        tcpstats.parse_tcp_info(raw[:50])
