"""Watch: configuration errors, hysteresis, baselines, recovery ladders, exec actions, metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from vnetdiag.analyze.detectors.base import AlertBook
from vnetdiag.analyze.detectors.baseline import Baseline
from vnetdiag.analyze.detectors.conntrack import port_arithmetic
from vnetdiag.cli.main import main
from vnetdiag.errors import BadInputError
from vnetdiag.export.metrics import Filters, snapshot_families
from vnetdiag.model.watch import ActionResult, ActionSpec, Alert, Transition
from vnetdiag.watch import actions, config as cfg, recording
from vnetdiag.watch.journal import AlertJournal, read
from vnetdiag.watch.responder import Responder

GOLDEN = Path(__file__).parents[1] / "golden" / "watch"


def _alert(subject="ns/dev", kind="backlog-frozen") -> Alert:
    return Alert(detector="tx_stall", subject=subject, kind=kind, severity="critical", summary="s",
                 netns="ns", device="dev")


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("interval_s = -1", "interval_s"),
    ("bogus = 1", "bogus"),
    ("[detectors.tx_stall]\nraise_after = 'two'", "detectors.tx_stall.raise_after"),
    ("[detectors.nope]\n", "detectors.nope"),
    ("[detectors.drop_anomaly]\nwhatever = 1", "detectors.drop_anomaly.whatever"),
    ("[[detectors.tx_stall.actions]]\nkind = 'reboot'", "detectors.tx_stall.actions[0].kind"),
    ("[[detectors.tx_stall.actions]]\nkind = 'exec'", "detectors.tx_stall.actions[0].command"),
    ("[[detectors.tx_stall.actions]]\nkind = 'qdisc-reset'\nmax_attempts = 0", "detectors.tx_stall.actions[0].max_attempts"),
    ("[exporter]\nlisten = 'nowhere'", "exporter.listen"),
    ("interval_s = [", "not valid TOML"),
])
def test_malformed_config_names_the_key(tmp_path, capsys, text, key):
    p = tmp_path / "watch.toml"
    p.write_text(text)
    with pytest.raises(BadInputError) as exc:
        cfg.load(p)
    assert key in str(exc.value)
    assert main(["watch", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err


def test_config_parses_ladders_and_params():
    c = cfg.parse({"interval_s": 2, "namespaces": ["vnd-*"],
                   "detectors": {"tx_stall": {"raise_after": 3, "actions": [
                       {"kind": "qdisc-reset", "cooldown_s": 5, "max_attempts": 2},
                       {"kind": "exec", "command": ["/bin/true"], "timeout_s": 1}]}}})
    d = c.detector("tx_stall")
    assert c.interval_s == 2.0 and d.params == {"raise_after": 3}
    assert [a.kind for a in d.actions] == ["qdisc-reset", "exec"] and d.actions[0].max_attempts == 2
    assert c.detector("conntrack").enabled


# --- hysteresis and baselines ---------------------------------------------------------------

def test_alert_book_raises_and_clears_with_hysteresis():
    book = AlertBook(raise_after=2, clear_after=2)
    a = _alert()
    seq = [[a], [], [a], [a], [], [a], [], []]
    changes = [[t.change for t in book.update(h, {"ns/dev"}, float(i))] for i, h in enumerate(seq)]
    assert changes == [[], [], [], ["raised"], [], [], [], ["cleared"]]
    assert book.active() == []


def test_alert_book_clears_when_subject_disappears():
    book = AlertBook(raise_after=1, clear_after=5)
    assert [t.change for t in book.update([_alert()], {"ns/dev"}, 0)] == ["raised"]
    out = book.update([], set(), 1)
    assert [t.change for t in out] == ["cleared"] and "gone" in out[0].alert.summary
    assert book._s == {}


def test_baseline_flags_a_jump_and_absorbs_a_lasting_level():
    b = Baseline()
    kw = dict(alpha=0.1, k=4.0, rel_floor=0.5, abs_floor=0.5)
    for _ in range(50):
        b.observe(10.0, **kw)
    thr = b.threshold(k=4.0, rel_floor=0.5, abs_floor=0.5)
    assert 10 < thr < 40          # noise-free level: the relative floor sets the scale
    assert 100 > thr              # a 10x jump is anomalous
    b.observe(100.0, **kw)        # one burst moves the mean only a little (clipped update)
    assert b.mean < 15
    for _ in range(200):
        b.observe(100.0, **kw)    # a lasting level becomes the new normal
    assert b.threshold(k=4.0, rel_floor=0.5, abs_floor=0.5) > 100


def test_port_arithmetic_of_seed_004():
    a = port_arithmetic(131072, (32768, 60999), 4)
    assert a["ports_per_client"] == 28232 and a["client_tuples"] == 112928
    assert a["clients_to_fill_table"] == 5 and a["client_tuples_vs_limit"] == round(112928 / 131072, 3)


# --- recovery ladders -----------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_ladder_retries_within_limits_then_moves_on_and_journals(tmp_path):
    from vnetdiag.model.watch import WatchConfig, DetectorConfig

    calls = []

    def runner(spec, alert, ns_path, *, attempt, dry_run, journal_owner):
        calls.append((spec.kind, attempt))
        return ActionResult(action=spec.kind, attempt=attempt, status="failed" if spec.kind == "exec" else "ok")

    conf = WatchConfig(detectors=(DetectorConfig(name="tx_stall", actions=(
        ActionSpec(kind="exec", command=("false",), cooldown_s=10, max_attempts=2),
        ActionSpec(kind="qdisc-reset", cooldown_s=10, max_attempts=1))),))
    j = AlertJournal(tmp_path / "j.jsonl")
    clock = FakeClock()
    r = Responder(conf, j, runner=runner, clock=clock)
    snap = recording.load(GOLDEN / "tx-stall.jsonl.gz")[1][0]
    a = _alert()
    for t in range(0, 60, 2):
        clock.t = float(t)
        r.on_cycle([], [a], snap, {})
    assert calls == [("exec", 1), ("exec", 2), ("qdisc-reset", 1)]
    lines = read(tmp_path / "j.jsonl")
    kinds = [x["type"] for x in lines]
    assert kinds == ["action", "outcome", "action", "outcome", "action", "outcome", "exhausted"]
    assert all(x["cleared"] is False for x in lines if x["type"] == "outcome")
    # Clearing during a cooldown is recorded as "cleared".
    r2 = Responder(conf, AlertJournal(tmp_path / "k.jsonl"), runner=runner, clock=clock)
    r2.on_cycle([], [a], snap, {})
    r2.on_cycle([Transition(change="cleared", alert=a, at_unix_s=0)], [], snap, {})
    out = read(tmp_path / "k.jsonl")
    assert [x["type"] for x in out] == ["action", "outcome"] and out[1]["cleared"] is True


def test_dry_run_plans_without_running():
    spec = ActionSpec(kind="link-bounce")
    res = actions.run(spec, _alert(), "/run/netns/ns", attempt=1, dry_run=True, journal_owner="x")
    assert res.status == "dry-run"
    assert "ip -n ns link set dev dev down" in res.detail


def test_exec_action_gets_the_alert_and_fails_or_times_out(tmp_path):
    got = tmp_path / "stdin.json"
    ok = ActionSpec(kind="exec", command=("sh", "-c", f"cat > {got}; exit 3"), timeout_s=5)
    res = actions.run(ok, _alert(), None, attempt=1, dry_run=False, journal_owner="x")
    assert res.status == "failed" and res.returncode == 3
    doc = json.loads(got.read_text())
    assert doc["schema"] == "vnetdiag.alert/1" and doc["subject"] == "ns/dev"
    hang = ActionSpec(kind="exec", command=("sh", "-c", "sleep 30"), timeout_s=0.5)
    t0 = time.monotonic()
    res = actions.run(hang, _alert(), None, attempt=2, dry_run=False, journal_owner="x")
    assert res.status == "timeout" and time.monotonic() - t0 < 5
    res = actions.run(ActionSpec(kind="exec", command=("/nonexistent/cmd",)), _alert(), None, attempt=1,
                      dry_run=False, journal_owner="x")
    assert res.status == "failed"


# --- metrics ---------------------------------------------------------------------------------

def test_metric_families_from_a_recorded_snapshot():
    snap = recording.load(GOLDEN / "tx-stall.jsonl.gz")[1][10]
    fams = {f.name: f for f in snapshot_families(snap)}
    # prometheus_client strips _total from counter family names.
    assert {"vnetdiag_network_receive_drop", "vnetdiag_network_transmit_packets", "vnetdiag_qdisc_drops",
            "vnetdiag_qdisc_current_queue_length", "vnetdiag_softnet_dropped", "vnetdiag_nf_conntrack_entries",
            "vnetdiag_nf_conntrack_entries_limit", "vnetdiag_network_info", "vnetdiag_netns_info",
            "vnetdiag_netstat_Tcp_RetransSegs"} <= set(fams)
    q = [s for s in fams["vnetdiag_qdisc_current_queue_length"].samples
         if s.labels["device"] == "vm3-p" and s.labels["parent"] == "root"]
    assert q and q[0].labels["kind"] == "tbf" and q[0].value > 0
    info = [s for s in fams["vnetdiag_network_info"].samples if s.labels["device"] == "vm1-p"][0]
    assert info.labels["master"] == "br0" and info.labels["peer_device"] == "eth0" and info.labels["peer_netns"] == "wch-vm1"
    assert "vnetdiag_network_queue_stat" not in fams  # driver statistics are opt-in
    full = {f.name: f for f in snapshot_families(snap, Filters(driver_stats=True))}
    queues = full["vnetdiag_network_queue_stat"].samples
    assert queues and all(s.labels["queue"].isdigit() and s.labels["direction"] in ("rx", "tx") for s in queues)
    assert not any(ch.isdigit() for n in full for ch in n)  # queue numbers never in names
    few = {f.name: f for f in snapshot_families(snap, Filters(devices_exclude=("lo", "vm*")))}
    devs = {s.labels["device"] for s in few["vnetdiag_network_info"].samples}
    assert "lo" not in devs and "vm3-p" not in devs and "br0" in devs


# --- command line: bad input ------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["export", "--listen", "nope"], "--listen"),
    (["export", "--listen", "127.0.0.1:99999"], "bad port"),
    (["watch", "--interval", "0"], "--interval"),
    (["watch", "--listen", "x"], "--listen"),
    (["watch", "--config", "/nonexistent/watch.toml"], "cannot read config"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_port_in_use_is_one_line(cli):
    import os
    import socket

    if os.geteuid() != 0:
        pytest.skip("export needs root before it binds")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("export", "--listen", f"127.0.0.1:{port}", "--netns", "nonexistent-ns", timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "already in use" in r.stderr


def test_no_root_is_exit_3(cli):
    import os
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to drop to nobody with setpriv")
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("vnetdiag"))
    for cmd in ("watch", "export"):
        r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", exe, cmd],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 3 and "needs root" in r.stderr and r.stderr.count("\n") == 1


# --- the loop on recorded snapshots ------------------------------------------------------------

class RecordedCollector:
    """Hands out recorded snapshots; fails once, as a vanished namespace can."""

    def __init__(self, snaps, fail_at: int):
        self.snaps = list(snaps)
        self.calls = 0
        self.fail_at = fail_at

    def snapshot(self):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(9, "Bad file descriptor")
        return self.snaps.pop(0)

    def close(self):
        pass


def test_watch_loop_on_recorded_snapshots_survives_a_failed_cycle(tmp_path):
    import threading

    from vnetdiag.model.watch import WatchConfig
    from vnetdiag.watch.loop import Watcher

    snaps = recording.load(GOLDEN / "tx-stall.jsonl.gz")[1]
    calls = []

    def runner(spec, alert, ns_path, *, attempt, dry_run, journal_owner):
        calls.append((spec.kind, alert.subject, dry_run, ns_path))
        return actions.run(spec, alert, ns_path, attempt=attempt, dry_run=dry_run, journal_owner=journal_owner)

    conf = cfg.parse({"interval_s": 0.001, "detectors": {"tx_stall": {"actions": [
        {"kind": "qdisc-reset", "cooldown_s": 1000}]}}})
    import dataclasses
    conf = dataclasses.replace(conf, dry_run=True)
    w = Watcher(conf, collector=RecordedCollector(snaps, fail_at=3), journal=AlertJournal(tmp_path / "j.jsonl"),
                runner=runner)
    w.start()
    n = w.run(threading.Event(), count=len(snaps) + 1)
    w.close("test")
    lines = read(tmp_path / "j.jsonl")
    types = [x["type"] for x in lines]
    assert n == len(snaps) + 1 and types[0] == "start" and types[-1] == "stop" and types.count("error") == 1
    raised = [x for x in lines if x["type"] == "alert" and x["change"] == "raised"]
    assert [x["alert"]["subject"] for x in raised] == ["wch-hv2/vm3-p"]
    assert calls == [("qdisc-reset", "wch-hv2/vm3-p", True, snaps[0].namespace(raised[0]["alert"]["netns_inode"]).path)]
    act = next(x for x in lines if x["type"] == "action")
    assert act["result"]["status"] == "dry-run" and "qdisc del dev vm3-p root" in act["result"]["detail"]
    assert act["counters_before"]["qdiscs"][0]["backlog_packets"] > 0
