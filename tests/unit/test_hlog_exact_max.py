"""--hlog interval maxima are the exact largest latency of each interval, in ms."""

from __future__ import annotations

import io
from array import array

from hdrh.log import HistogramLogReader

from vnetdiag.probe import histograms as H
from vnetdiag.probe.client import _Aggregate
from vnetdiag.probe.streams import Chunk


def _chunk(stream: int, interval: int, latencies_ns: list[int]) -> Chunk:
    c = Chunk(stream=stream, interval=interval, latency_ns=array("q"), uncorrected_ns=array("q"),
              connect_ns=array("q"), done_ns=array("q"))
    c.latency_ns.extend(latencies_ns)
    return c


def _lines(text: str) -> list[list[str]]:
    return [ln.split(",") for ln in text.splitlines() if ln[:1].isdigit()]


def test_interval_max_is_exact_where_the_histogram_rounds_up_and_hdrh_floored(tmp_path):
    log = io.StringIO()
    agg = _Aggregate(2, H.IntervalLog(log, start_epoch_s=0.0))
    # 200.912345 ms: HDR's bucket top is 200.933375 ms, hdrh's writer printed 200.000000.
    agg.add([_chunk(0, 0, [25_000] * 50 + [200_912_345]), _chunk(1, 0, [31_337])])
    agg.add([_chunk(0, 1, [987_654]), _chunk(1, 1, [12_345])])
    agg.finish(1.5)
    lines = _lines(log.getvalue())
    assert [ln[2] for ln in lines] == ["200.912345", "0.987654"]
    assert [(ln[0], ln[1]) for ln in lines] == [("0.000000", "1.000000"), ("1.000000", "0.500000")]
    h = H.new_histogram()
    H.record_many(h, [200_912_345])
    assert h.get_max_value() != 200_912_345  # why the histogram's own max is not used
    # hdrh still reads the log back, counts unchanged.
    path = tmp_path / "p.hlog"
    path.write_text(log.getvalue())
    reader = HistogramLogReader(str(path), H.new_histogram())
    counts = []
    while (hist := reader.get_next_interval_histogram()) is not None:
        counts.append(hist.get_total_count())
    assert counts == [52, 2]


def test_an_empty_interval_has_max_zero():
    log = io.StringIO()
    agg = _Aggregate(1, H.IntervalLog(log, start_epoch_s=0.0))
    agg.add([_chunk(0, 0, [1_000]), _chunk(0, 2, [2_000])])
    agg.finish(3.0)
    assert [ln[2] for ln in _lines(log.getvalue())] == ["0.001000", "0.000000", "0.002000"]
