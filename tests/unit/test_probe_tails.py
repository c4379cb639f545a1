"""Tail signatures: bands from rto_min, classification, the tail table."""

from __future__ import annotations

from vnetdiag.analyze import tails as T
from vnetdiag.model.probe import SlowTransaction


def slow(ms, phase="transaction", client=None, server=None):
    return SlowTransaction(stream=0, at_s=1.0, phase=phase, latency_us=ms * 1000, client_retrans_delta=client,
                           server_retrans_delta=server, client_backoff=0)


def label(ms, phase="transaction", rto_min_ms=200.0):
    band = T.classify(ms, phase, T.bands(rto_min_ms=rto_min_ms))
    return band.signature if band else "other"


def test_default_linux_timers():
    assert label(203.5) == "min-rto"
    assert label(407) == "rto-x2"  # TLP then RTO, or RTO then its first doubling
    assert label(610) == "rto-x2"
    assert label(1210) == "rto-x4"
    assert label(41) == "delayed-ack"
    assert label(15) == "other" and label(120) == "other"


def test_syn_retransmits_are_cumulative():
    assert label(1003, "connect") == "syn-retrans-1"
    assert label(3010, "connect") == "syn-retrans-2"
    assert label(7020, "connect") == "syn-retrans-3"
    assert label(300, "connect") == "other"


def test_route_rto_min_moves_the_bands():
    assert label(52, rto_min_ms=50) == "min-rto"
    assert label(103, rto_min_ms=50) == "rto-x2"
    assert label(203, rto_min_ms=50) == "rto-x4"
    # the delayed-ACK band gives way to an RTO band it would overlap
    assert not [b for b in T.bands(rto_min_ms=40) if b.signature == "delayed-ack" and b.low_ms >= 36]


def test_tail_table_counts_shares_and_confirmation():
    rows = T.tail_table([slow(204, client=1), slow(201, server=1), slow(205), slow(402, client=2),
                         slow(41), slow(15), slow(1001, "connect", client=1)],
                        transactions=10_000, connects=500, slow_threshold_ms=10)
    by = {(r.signature, r.phase): r for r in rows}
    assert [r.signature for r in rows] == ["delayed-ack", "min-rto", "rto-x2", "other", "syn-retrans-1"]
    assert by["min-rto", "transaction"].count == 3
    assert by["min-rto", "transaction"].confirmed_by_tcp_info == 2
    assert by["min-rto", "transaction"].share == 3 / 10_000
    assert by["rto-x2", "transaction"].expected_retransmits == 2
    assert by["delayed-ack", "transaction"].confirmed_by_tcp_info == 0
    assert by["other", "transaction"].threshold_ms == 10
    assert by["syn-retrans-1", "connect"].share == 1 / 500
    assert T.implied_retransmits(rows) == 3 * 1 + 1 * 2 + 1


def test_no_slow_transactions_no_rows():
    assert T.tail_table([], transactions=100) == ()


def test_syn_schedule_follows_tcp_syn_linear_timeouts():
    assert [T.syn_schedule_ms(k) for k in (1, 2, 3, 4)] == [1000, 3000, 7000, 15000]
    assert [T.syn_schedule_ms(k, linear_timeouts=4) for k in range(1, 8)] == \
        [1000, 2000, 3000, 4000, 5000, 7000, 11000]
    linear = T.bands(syn_linear_timeouts=4)
    assert T.classify(2010, "connect", linear).signature == "syn-retrans-2"
    assert T.classify(5100, "connect", linear).signature == "syn-retrans-5"
    assert T.classify(5100, "connect", T.bands()).signature == "syn-retrans-2"


def test_a_handshakes_round_trip_is_read_against_the_namespaces_syn_schedule():
    """Measured on this kernel (6.18, tcp_syn_linear_timeouts = 4) with 20 % loss
    towards a guest: round trips of 1.02 s and 2.045 s, one and two lost SYNs.
    Read against the doubling schedule (1 s, 3 s), 2.045 s would be one."""
    from vnetdiag.probe.handshake import syn_retransmits

    assert [syn_retransmits(ms, 4) for ms in (0.4, 1017.0, 2045.0, 3050.0)] == [0, 1, 2, 3]
    assert [syn_retransmits(ms, 0) for ms in (0.4, 1017.0, 2045.0, 3050.0)] == [0, 1, 1, 2]
