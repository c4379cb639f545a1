"""Watch detectors replayed on snapshots recorded from the lab (tests/golden/watch/record.py).

Each recording's note says at which snapshot the fault was added and cleared;
the detectors must raise on the faulty device only, after the fault, and clear
after it is gone; the clean recording must raise nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vnetdiag.analyze import detectors as det
from vnetdiag.model.watch import Observation, WatchConfig
from vnetdiag.watch import config as cfg
from vnetdiag.watch import recording

HERE = Path(__file__).parent / "watch"


def replay(name: str, config: WatchConfig = WatchConfig(), port_range=(32768, 60999)):
    header, snaps = recording.load(HERE / f"{name}.jsonl.gz")
    marks = dict(kv.split("=") for kv in header["note"].split() if "=" in kv)
    detectors = det.build(config)
    prev = None
    out = []
    for i, s in enumerate(snaps):
        obs = Observation(previous=prev, current=s, port_range=port_range)
        out.extend((i, t) for t in det.run_all(detectors, obs))
        prev = s
    return {k: int(v) for k, v in marks.items()}, out, detectors


def test_tx_stall_raised_on_the_stalled_device_and_cleared():
    marks, out, _ = replay("tx-stall")
    raised = [(i, t) for i, t in out if t.change == "raised"]
    assert [(t.alert.detector, t.alert.subject, t.alert.kind) for _, t in raised] == \
        [("tx_stall", "wch-hv2/vm3-p", "backlog-frozen")]
    i, t = raised[0]
    assert marks["fault_added"] < i < marks["fault_cleared"]
    assert t.alert.evidence["tx_packets_delta"] == 0 and t.alert.evidence["backlog_packets"] > 0
    assert "tbf" in t.alert.evidence["qdisc"]
    cleared = [i for i, t in out if t.change == "cleared" and t.alert.detector == "tx_stall"]
    assert cleared and marks["fault_cleared"] <= cleared[0] <= marks["fault_cleared"] + 2


def test_tx_stall_needs_consecutive_cycles():
    # raise_after larger than the stalled stretch: never raised.
    conf = cfg.parse({"detectors": {"tx_stall": {"raise_after": 30}}})
    _, out, _ = replay("tx-stall", conf)
    assert not [t for _, t in out if t.alert.detector == "tx_stall"]


def test_guest_tx_stall_raised_on_the_vms_tap_only_and_cleared():
    # Both VMs are pinged throughout; only vm1's NIC stops sending (inside the guest).
    marks, out, _ = replay("guest-tx-stall")
    raised = [(i, t) for i, t in out if t.change == "raised"]
    assert [(t.alert.detector, t.alert.subject, t.alert.kind) for _, t in raised] == \
        [("guest_tx_stall", "wch-hv1/vm1-t0", "guest-silent")]
    i, t = raised[0]
    assert marks["fault_added"] < i <= marks["fault_added"] + 3 and i < marks["fault_cleared"]
    ev = t.alert.evidence
    assert ev["from_guest_frames"] == 0 and ev["to_guest_frames"] >= 3 and ev["device_kind"] == "tun"
    assert (ev["to_guest_counter"], ev["from_guest_counter"]) == ("tx_packets", "rx_packets")
    cleared = [i for i, t in out if t.change == "cleared" and t.alert.detector == "guest_tx_stall"]
    assert cleared and marks["fault_cleared"] <= cleared[0] <= marks["fault_cleared"] + 3


def test_guest_tx_stall_wants_traffic_to_the_guest():
    # Asking for more frames per cycle than the pings give: the silent guest is not called stalled.
    conf = cfg.parse({"detectors": {"guest_tx_stall": {"min_to_guest_frames": 50}}})
    _, out, _ = replay("guest-tx-stall", conf)
    assert not [t for _, t in out if t.alert.detector == "guest_tx_stall"]


def test_queue_overflow_is_a_drop_anomaly_on_that_device_only():
    marks, out, _ = replay("queue-overflow")
    raised = [(i, t) for i, t in out if t.change == "raised"]
    assert {(t.alert.detector, t.alert.subject, t.alert.kind) for _, t in raised} == \
        {("drop_anomaly", "wch-hv1/vx0", "qdisc_drops")}
    i, t = raised[0]
    assert marks["fault_added"] < i < marks["fault_cleared"]
    ev = t.alert.evidence
    assert ev["rate_per_s"] > ev["threshold_per_s"] >= ev["baseline_per_s"]
    assert ev["delta"] >= 5 and "tbf" in ev["qdisc"]
    assert any(t.change == "cleared" and t.alert.subject == "wch-hv1/vx0" for _, t in out)


def test_drop_anomaly_respects_raise_after():
    # Demanding more anomalous cycles in a row than the fault lasted: nothing raised.
    conf = cfg.parse({"detectors": {"drop_anomaly": {"raise_after": 30}}})
    _, out, _ = replay("queue-overflow", conf)
    assert not [t for _, t in out if t.change == "raised"]


def test_conntrack_full_raises_pressure_with_forecast_and_port_arithmetic():
    conf = cfg.parse({"detectors": {"conntrack": {"clients": 4}}})
    marks, out, _ = replay("conntrack-full", conf)
    raised = {t.alert.kind: (i, t.alert) for i, t in out if t.change == "raised" and t.alert.detector == "conntrack"}
    assert {"table-nearly-full", "refusing"} <= set(raised)
    i, a = raised["table-nearly-full"]
    assert i >= marks["fault_added"] and a.subject == "wch-hv1"
    ev = a.evidence
    assert ev["count"] == ev["limit"] == 64 and ev["time_to_full_s"] == 0
    assert ev["ports_per_client"] == 60999 - 32768 + 1 and ev["clients_to_fill_table"] == 1
    assert ev["client_tuples"] == 4 * 28232
    assert "full now" in a.summary and "4 clients x 28232" in a.summary
    assert raised["refusing"][1].evidence["drop_delta"] > 0


def test_link_events_carrier_mtu_and_gone():
    marks, out, _ = replay("links")
    assert all(t.change == "event" for _, t in out)
    got = {(t.alert.kind, t.alert.subject) for _, t in out}
    assert ("mtu-change", "wch-hv1/vx0") in got
    assert ("carrier-change", "wch-vm3/eth0") in got and ("carrier-change", "wch-hv2/vm3-p") in got
    assert {("device-gone", "wch-hv1/wchd0"), ("device-gone", "wch-hv1/wchd1")} <= got
    mtu = [t.alert for _, t in out if t.alert.kind == "mtu-change" and t.alert.subject == "wch-hv1/vx0"]
    assert [(a.evidence["was_mtu"], a.evidence["mtu"]) for a in mtu] == [(1500, 1400), (1400, 1500)]
    down = [t.alert for _, t in out if t.alert.kind == "carrier-change" and t.alert.subject == "wch-vm3/eth0"]
    assert [a.evidence["carrier"] for a in down] == [False, True]
    # Nothing else: the lab's other devices did not change.
    assert {s for _, s in got} <= {"wch-hv1/vx0", "wch-hv1/br0", "wch-vm3/eth0", "wch-hv2/vm3-p",
                                   "wch-hv1/wchd0", "wch-hv1/wchd1"}


def test_clean_lab_raises_nothing():
    _, out, detectors = replay("clean")
    assert out == []
    assert not any(d.active() for d in detectors)


def test_drop_baselines_stay_bounded():
    _, _, detectors = replay("clean")
    drops = next(d for d in detectors if d.name == "drop_anomaly")
    assert len(drops.baselines) < 50


def test_recording_round_trip(tmp_path):
    _, snaps = recording.load(HERE / "tx-stall.jsonl.gz")
    recording.dump(tmp_path / "x.jsonl.gz", snaps[:2])
    assert recording.load(tmp_path / "x.jsonl.gz")[1] == snaps[:2]


def test_tx_stall_per_queue_on_a_multiqueue_device():
    # Two-queue veth with an mq root: queue 0 stalled (tbf), queue 1 flowing (pfifo).
    marks, out, _ = replay("mq-stall")
    raised = [(i, t.alert) for i, t in out if t.change == "raised"]
    assert [(a.subject, a.kind, a.queue) for _, a in raised] == [("wch-mqa/q0/tx-queue 0", "backlog-frozen", 0)]
    i, a = raised[0]
    assert marks["fault_added"] < i < marks["fault_cleared"]
    assert a.evidence["backlog_packets"] > 0 and a.evidence["qdisc"].startswith("tbf")
    # The device as a whole kept sending through queue 1: no device-level stall.
    assert not any(t.alert.subject == "wch-mqa/q0" for _, t in out)
    assert any(t.change == "cleared" and t.alert.queue == 0 for _, t in out)
