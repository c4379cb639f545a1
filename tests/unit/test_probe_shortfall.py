"""What the server waits on (a whole frame, not any buffered byte) and when a probe
result says it did not measure the path (``ProbeResult.shortfall``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vnetdiag.model.probe import StreamStats, UdpCounts
from vnetdiag.probe import protocol as p
from vnetdiag.probe.client import shortfall_of


def test_a_partial_frame_is_pending_but_not_ready():
    frame = p.encode_request(10, bytes(20_000))
    dec = p.FrameDecoder(1 << 16)
    dec.feed(frame[:3])
    assert dec.pending == 3 and not dec.ready and dec.missing_bytes == 0  # header incomplete
    dec.feed(frame[3:16384])
    assert not dec.ready and dec.missing_bytes == len(frame) - 16384
    dec.feed(frame[16384:])
    assert dec.ready and dec.missing_bytes == 0
    assert dec.next()[0] == p.MsgType.REQUEST and not dec.ready


def test_a_refused_header_is_ready_so_the_error_is_sent_at_once():
    dec = p.FrameDecoder(100)
    dec.feed(p.HEADER.pack(p.MsgType.REQUEST, 10_000))
    assert dec.ready and dec.missing_bytes == 105 - 5  # the read is capped at the limit
    dec = p.FrameDecoder(100)
    dec.feed(b"\xee\x00\x00\x00\x01")
    assert dec.ready


@given(st.lists(st.integers(0, 3000), min_size=1, max_size=8), st.integers(1, 700))
def test_ready_is_true_exactly_when_next_makes_progress(sizes, chunk):
    stream = b"".join(p.encode_request(1, bytes(n)) for n in sizes)
    dec = p.FrameDecoder(4096)
    seen = 0
    for i in range(0, len(stream), chunk):
        dec.feed(stream[i:i + chunk])
        while dec.ready:
            assert dec.next() is not None
            seen += 1
        assert dec.next() is None
    assert seen == len(sizes) and dec.pending == 0


def streams(*counts):
    return tuple(StreamStats(stream=i, worker=0, transactions=n, rate_per_s=n / 1.0, errors=0, p50_us=1.0,
                             p99_us=1.0, max_us=1.0, starved=False) for i, n in enumerate(counts))


def short(**kw):
    args = {"transactions": 100, "errors": 0, "per_stream": streams(100), "notes": (), "duration_s": 1.0,
            "rate_per_s": None, "udp": None}
    args.update(kw)
    return shortfall_of(**args)


def udp(sent, replies):
    return UdpCounts(sent=sent, replies=replies, lost=sent - replies, late=0, duplicate=0, reordered=0,
                     server_received=sent, requests_lost=0)


def test_a_full_run_has_no_shortfall():
    assert short() is None
    assert short(rate_per_s=100.0, transactions=60) is None  # 60 of 100 paced: slow, but measured
    assert short(udp=udp(100, 60)) is None
    assert short(errors=50) is None


def test_each_way_of_falling_short_is_named():
    assert short(transactions=0, per_stream=streams(0), notes=("stream 0: the server closed the connection",)) \
        == "no transaction completed in 1 s (stream 0: the server closed the connection)"
    assert "1 of 2 streams failed: stream 1: x" == short(per_stream=streams(60, 40), notes=("stream 1: x",))
    assert "1 of 3 streams completed no transaction (stream 2 first)" == short(per_stream=streams(60, 40, 0))
    assert "40 transactions completed of the 100 paced at 100/s" == short(transactions=40, rate_per_s=100.0)
    assert "only 40 of 100 UDP requests were answered in time" == short(transactions=40, udp=udp(100, 40))
    assert "101 attempts failed, 100 transactions completed" == short(errors=101)
