"""Assembling a ProbeResult from chunks: merged percentiles, per-stream rates,
starved streams, the interval log, the document."""

from __future__ import annotations

import io
from array import array

from vnetdiag.model.probe import SlowTransaction
from vnetdiag.probe import histograms as H
from vnetdiag.probe.client import _Aggregate, _result
from vnetdiag.probe.streams import Chunk, StreamEnd
from vnetdiag.probe.tcpstats import MibSnapshot


def chunk(stream, interval, values, slow=()):
    return Chunk(stream=stream, interval=interval, latency_ns=array("q", values), uncorrected_ns=array("q"),
                 connect_ns=array("q"), slow=list(slow))


def build(agg, streams=3):
    ends = [StreamEnd(stream=i, worker=0, error=None, udp=None) for i in range(streams)]
    return _result(agg, ends, target="198.51.100.3", port=7735, pattern="tcp-rr", streams=streams, workers=1,
                   measured_s=2.0, warmup_s=0.0, request_bytes=1, response_bytes=1, rate_per_s=None, netns=None,
                   ns_inode=1, compute_ms=1.0, slow_threshold_ms=10.0, rto_min=200.0, rto_source="sysctl",
                   mib_before=MibSnapshot(retrans_segs=10, syn_retrans=0),
                   mib_after=MibSnapshot(retrans_segs=12, syn_retrans=0), server=None, interrupted=False,
                   syn_linear=4)


def test_merged_percentiles_rates_and_a_starved_stream():
    log = io.StringIO()
    agg = _Aggregate(3, H.IntervalLog(log, start_epoch_s=0.0))
    tail = SlowTransaction(stream=2, at_s=1.5, phase="transaction", latency_us=205_000.0, client_retrans_delta=1,
                           server_retrans_delta=0, client_backoff=0)
    agg.add([chunk(0, 0, [20_000] * 1000), chunk(1, 0, [30_000] * 1000), chunk(2, 0, [25_000] * 10)])
    agg.add([chunk(0, 1, [20_000] * 1000), chunk(1, 1, [30_000] * 1000),
             chunk(2, 1, [25_000] * 9 + [205_000_000], [tail])])
    agg.finish(2.0)
    r = build(agg)
    assert r.transactions == 4020 and r.rate_per_s == 2010
    assert [s.transactions for s in r.per_stream] == [2000, 2000, 20]
    assert [s.starved for s in r.per_stream] == [False, False, True]
    assert r.latency.max_us > 200_000 and 20 <= r.latency.get("p50") < 31
    assert [(t.signature, t.count, t.confirmed_by_tcp_info) for t in r.tails] == [("min-rto", 1, 1)]
    assert r.tcp.retrans_segs_delta == 2 and r.tcp.tcp_info_client_retrans == 1
    lines = [ln for ln in log.getvalue().splitlines() if ln[:1].isdigit()]
    assert len(lines) == 2 and lines[1].split(",")[2].startswith("205")  # interval max in ms
    doc = r.as_document()
    assert doc["latency_us"]["samples_beyond"]["max"] == 1 and doc["syn_linear_timeouts"] == 4
