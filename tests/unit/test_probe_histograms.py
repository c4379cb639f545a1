"""HDR histograms: bulk recording is exact, merging is not averaging, the log and bins add up."""

from __future__ import annotations

import io

import numpy as np
from hdrh.log import HistogramLogReader
from hypothesis import given, settings
from hypothesis import strategies as st

from vnetdiag.probe import histograms as H

values_ns = st.lists(st.integers(min_value=1, max_value=H.HIGHEST_NS), min_size=1, max_size=300)


@settings(max_examples=100, deadline=None)
@given(values_ns)
def test_bucket_floor_is_hdr_lowest_equivalent(values):
    h = H.new_histogram()
    got = H.bucket_floor(np.array(values, dtype=np.int64)).tolist()
    assert got == [h.get_lowest_equivalent_value(v) for v in values]


@settings(max_examples=50, deadline=None)
@given(values_ns)
def test_record_many_equals_one_by_one(values):
    bulk, single = H.new_histogram(), H.new_histogram()
    H.record_many(bulk, np.array(values, dtype=np.int64))
    for v in values:
        single.record_value(v)
    assert bulk.get_total_count() == single.get_total_count() == len(values)
    for q in (50, 90, 99, 99.9, 100):
        assert bulk.get_value_at_percentile(q) == single.get_value_at_percentile(q)
    assert bulk.get_max_value() == single.get_max_value()
    assert bulk.get_min_value() == single.get_min_value()


def test_merge_is_not_an_average_of_percentiles():
    fast, slow = H.new_histogram(), H.new_histogram()
    H.record_many(fast, np.full(9900, 20_000))
    H.record_many(slow, np.concatenate([np.full(50, 20_000), np.full(50, 200_000_000)]))
    total = H.merged([fast, slow])
    assert total.get_total_count() == 10_000
    everything = H.new_histogram()
    H.record_many(everything, np.concatenate([np.full(9950, 20_000), np.full(50, 200_000_000)]))
    assert total.get_value_at_percentile(99.9) == everything.get_value_at_percentile(99.9)
    # averaging the two p99s would have said ~100 ms; the merged p99 is 20 us
    assert total.get_value_at_percentile(99) < 21_000


def test_summary_counts_the_samples_behind_each_percentile():
    h = H.new_histogram()
    H.record_many(h, np.concatenate([np.full(9980, 15_000), np.full(20, 201_000_000)]))
    s = H.summarize(h)
    assert s.count == 10_000
    assert s.get("p50") == s.get("p99") and 15 <= s.get("p50") < 15.1
    by = {p.name: p for p in s.percentiles}
    assert by["p50"].samples_beyond == 10_000
    assert by["p999"].samples_beyond == 20 and by["p999"].latency_us > 200_000
    assert by["max"].samples_beyond == 20


def test_empty_summary_is_zeros():
    s = H.summarize(H.new_histogram())
    assert s.count == 0 and s.max_us == 0 and len(s.percentiles) == 6


def test_log_bins_cover_min_to_max_and_add_up():
    h = H.new_histogram()
    data = np.array([12_000] * 500 + [35_000] * 40 + [205_000_000] * 3 + [410_000_000])
    H.record_many(h, data)
    bins = H.log_bins(h)
    assert sum(b.count for b in bins) == len(data)
    assert bins[0].low_us <= 12 < bins[0].high_us
    assert bins[-1].low_us <= 410_000 < bins[-1].high_us
    assert [b.low_us for b in bins[:3]] == [10, 20, 50]  # 1-2-5 steps
    assert next(b for b in bins if b.low_us == 200_000).count == 4
    assert next(b for b in bins if b.low_us == 20).count == 40


def test_interval_log_reads_back(tmp_path):
    buf = io.StringIO()
    log = H.IntervalLog(buf, start_epoch_s=1_700_000_000.0, comment="test")
    for i, n in enumerate((100, 0, 7)):
        h = H.new_histogram()
        H.record_many(h, np.full(n, 25_000 + i))
        log.write(h, float(i), float(i + 1))
    text = buf.getvalue()
    assert "#[Histogram log format version 1.2]" in text and "#[StartTime: 1700000000.000" in text
    (tmp_path / "x.hlog").write_text(text)
    reader = HistogramLogReader(str(tmp_path / "x.hlog"), H.new_histogram())
    counts = []
    while (h := reader.get_next_interval_histogram()) is not None:
        counts.append(h.get_total_count())
    assert counts == [100, 0, 7]
