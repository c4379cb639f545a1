"""vnetdiag watch on the lab: each fault raises the right alert on the right
subject, actions run within their limits and are journaled, SIGTERM ends it
cleanly, a clean lab raises nothing while namespaces churn beside it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from watchproc import WatchProc, pinger, udp_load, wait_for

pytestmark = pytest.mark.root


def _ns_list(lab) -> str:
    nodes = ("fabric", "hv1", "hv2", "vm1", "vm2", "vm3")
    return "[" + ", ".join(f'"{lab.netns(n)}"' for n in nodes) + "]"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cycles(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("vnetdiag_watch_cycles_total"):
            return float(line.split()[-1])
    return 0


def _kernel_drops(port: int, netns: str, device: str, reason: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    want = f'vnetdiag_kernel_drops_total{{device="{device}",netns="{netns}",reason="{reason}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(want + " "))


def _rule_packets(lab, node: str, comment: str) -> int:
    out = lab.run(node, ["iptables", "-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"]).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if comment in line)


def _tc_backlog(lab, node: str, dev: str) -> int:
    out = lab.run(node, ["tc", "-s", "-j", "qdisc", "show", "dev", dev]).stdout
    return sum(q.get("qlen", 0) for q in json.loads(out) if q.get("root"))


def test_tx_stall_detected_within_three_intervals_and_cleared_by_qdisc_reset(lab, tmp_path):
    interval = 1.0
    w = WatchProc(tmp_path, f"""
interval_s = {interval}
namespaces = {_ns_list(lab)}
[detectors.tx_stall]
raise_after = 2
[[detectors.tx_stall.actions]]
kind = "qdisc-reset"
cooldown_s = 5
max_attempts = 1
""")
    load = None
    try:
        lab.add_fault("tx-stall", at="hv2:vm3-p")
        # 1 KB pings: the first empties tbf's bucket, the rest wait in the backlog.
        load = subprocess.Popen(["ip", "netns", "exec", lab.netns("vm1"), "ping", "-q", "-s", "1000", "-i", "0.05",
                                 lab.ip("vm3")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The stall starts when the first packet is held: seen by tc, the reference.
        wait_for(lambda: _tc_backlog(lab, "hv2", "vm3-p") > 0, 10, "a backlog on vm3-p", step_s=0.02)
        t_fault = time.time()
        subject = f"{lab.netns('hv2')}/vm3-p"
        raised = wait_for(lambda: [a for a in w.alerts("raised", "tx_stall") if a["alert"]["subject"] == subject],
                          15, "tx_stall raised")[0]
        assert raised["alert"]["kind"] == "backlog-frozen"
        assert raised["at_unix_s"] - t_fault <= 3 * interval + 0.5, "not detected within three intervals"
        assert raised["counters"]["qdiscs"][0]["kind"] == "tbf"
        action = wait_for(lambda: w.lines("action"), 10, "the qdisc-reset action")[0]
        assert action["result"]["action"] == "qdisc-reset" and action["result"]["status"] == "ok", action
        assert action["counters_before"]["qdiscs"][0]["backlog_packets"] > 0
        outcome = wait_for(lambda: w.lines("outcome"), 10, "the outcome of the action")[0]
        assert outcome["cleared"] is True and outcome["action_id"] == action["action_id"]
        assert not [q for q in outcome["counters_after"]["qdiscs"] if q["kind"] == "tbf"]
        assert w.alerts("cleared", "tx_stall")
        out = lab.run("hv2", ["tc", "qdisc", "show", "dev", "vm3-p"]).stdout
        assert "tbf" not in out
    finally:
        if load:
            load.kill()
            load.wait()
        rc = w.stop()
    assert rc == 0, w.err.read_text()
    lines = w.journal.read_text().splitlines()
    assert all(json.loads(x) for x in lines)  # every line complete
    assert json.loads(lines[-1])["type"] == "stop" and json.loads(lines[-1])["reason"] == "SIGTERM"


def test_queue_overflow_raises_a_drop_anomaly_on_that_device_only(lab, tmp_path):
    port = _free_port()
    bg = pinger(lab, "vm1", "vm3")
    w = WatchProc(tmp_path, f"""
interval_s = 0.5
namespaces = {_ns_list(lab)}
[detectors.drop_anomaly]
warmup_cycles = 3
""", "--listen", f"127.0.0.1:{port}")
    load = None
    try:
        wait_for(lambda: _cycles(port) >= 5, 15, "the baselines' warm-up")
        lab.add_fault("queue-overflow", at="hv1:vx0")
        load = udp_load(lab, "vm1", "vm3", 1000, 6.0)
        subject = f"{lab.netns('hv1')}/vx0"
        hit = wait_for(lambda: w.alerts("raised", "drop_anomaly"), 15, "a drop anomaly")[0]["alert"]
        load.wait(timeout=20)
        lab.clear_faults()
        c = _cycles(port)
        wait_for(lambda: _cycles(port) >= c + 2, 10, "two more cycles")
    finally:
        if load:
            load.kill()
        bg.kill()
        assert w.stop() == 0
    assert hit["subject"] == subject and hit["kind"] == "qdisc_drops" and hit["device"] == "vx0"
    others = [a["alert"]["subject"] for a in w.lines("alert") if a["alert"]["subject"] != subject]
    assert others == [], f"alerts elsewhere: {others}"


def test_conntrack_full_raises_pressure_and_a_failing_exec_is_retried_within_limits(global_settings, lab, tmp_path):
    got = tmp_path / "got"
    got.mkdir()
    # The table is full before the watch starts: a watch sampling it while the
    # fault fills it would (rightly) raise "nearly full" at 60 of 64.
    lab.add_fault("conntrack-full", at="hv1", max=64)
    w = WatchProc(tmp_path, f"""
interval_s = 0.5
namespaces = {_ns_list(lab)}
[detectors.conntrack]
clients = 4
[[detectors.conntrack.actions]]
kind = "exec"
command = ["sh", "-c", "cat > {got}/alert-$$.json; echo failing over >&2; exit 1"]
cooldown_s = 0.5
max_attempts = 2
[[detectors.conntrack.actions]]
kind = "exec"
command = ["sleep", "30"]
timeout_s = 1
cooldown_s = 0.5
""")
    try:
        lab.run("vm1", ["python3", "-c", "import socket\nfor p in range(7200,7204):\n s=socket.socket();"
                        "s.settimeout(0.2)\n try: s.connect(('%s',p))\n except OSError: pass" % lab.ip("vm3")],
                check=False)
        subject = lab.netns("hv1")
        full = wait_for(lambda: [a for a in w.alerts("raised", "conntrack")
                                 if a["alert"]["kind"] == "table-nearly-full"], 10, "conntrack pressure")[0]["alert"]
        ladder = lambda: [x for x in w.lines() if x.get("kind") == "table-nearly-full"  # noqa: E731
                          and x["type"] in ("action", "exhausted")]
        wait_for(lambda: any(x["type"] == "exhausted" for x in ladder()), 20, "the ladder to be used up")
    finally:
        assert w.stop() == 0
    assert full["subject"] == subject
    ev = full["evidence"]
    assert ev["count"] >= ev["limit"] == 64 and ev["time_to_full_s"] == 0
    assert ev["ports_per_client"] > 0 and ev["client_tuples"] == 4 * ev["ports_per_client"]
    assert "full now" in full["summary"] and "4 clients x" in full["summary"]
    steps = [(x["result"]["action"], x["result"]["attempt"], x["result"]["status"]) for x in ladder()
             if x["type"] == "action"]
    assert steps == [("exec", 1, "failed"), ("exec", 2, "failed"), ("exec", 1, "timeout")]
    assert "failing over" in ladder()[0]["result"]["detail"]
    docs = [json.loads(p.read_text()) for p in got.iterdir()]
    assert docs and all(d["detector"] == "conntrack" and d["schema"] == "vnetdiag.alert/1" for d in docs)
    outcomes = [x for x in w.lines("outcome") if x["kind"] == "table-nearly-full"]
    assert len(outcomes) == 3 and not any(o["cleared"] for o in outcomes)


CHURN_S = 120.0  # the issue asks for at least two minutes


@pytest.mark.slow
def test_churn_for_two_minutes_and_a_clean_lab_raises_nothing(lab, tmp_path):
    """Two watches at once for CHURN_S: one on namespaces and interfaces created
    and deleted every second (no crash, flat memory), one on the lab with
    background pings and no fault (no alert, no event)."""
    import os

    from vnetdiag.system.undo import DeleteNetns, Journal

    journal = Journal(f"test-watch-churn-{os.getpid()}").open()
    tag = f"wchc{os.getpid()}"  # unique per run: several suites may run at once on this machine
    base = f"{tag}-base"
    journal.record(DeleteNetns(name=base))
    churn = clean = None
    pings = []
    rss = []
    try:
        subprocess.run(["ip", "netns", "add", base], check=True)
        churn = WatchProc(tmp_path, f'interval_s = 0.5\nnamespaces = ["{tag}-*"]\n', name="churn")
        clean = WatchProc(tmp_path, f"interval_s = 1\nnamespaces = {_ns_list(lab)}\n", name="clean")
        pings = [pinger(lab, "vm1", "vm3"), pinger(lab, "vm1", "vm2"), pinger(lab, "vm3", "vm2")]
        t_end = time.monotonic() + CHURN_S
        i = 0
        while time.monotonic() < t_end:
            t_next = time.monotonic() + 1.0
            name = f"{tag}-{i}"
            journal.record(DeleteNetns(name=name))
            cmds = [["ip", "netns", "add", name],
                    ["ip", "-n", name, "link", "add", "a0", "type", "veth", "peer", "name", "b0"],
                    ["ip", "-n", name, "link", "set", "a0", "up"],
                    ["ip", "-n", base, "link", "add", f"v{i}a", "type", "veth", "peer", "name", f"v{i}b"],
                    ["ip", "-n", base, "link", "set", f"v{i}a", "up"]]
            if i >= 2:
                cmds.append(["ip", "-n", base, "link", "del", f"v{i - 2}a"])
            if i >= 3:
                cmds.append(["ip", "netns", "del", f"{tag}-{i - 3}"])
            for c in cmds:
                subprocess.run(c, check=True, capture_output=True)
            assert churn.proc.poll() is None, churn.err.read_text()
            assert clean.proc.poll() is None, clean.err.read_text()
            rss.append(churn.rss_kib())
            i += 1
            time.sleep(max(0.0, t_next - time.monotonic()))
    finally:
        for p in pings:
            p.kill()
        rc_churn = churn.stop() if churn else None
        rc_clean = clean.stop() if clean else None
        failures = journal.undo()
    assert rc_churn == 0 and rc_clean == 0, churn.err.read_text() + clean.err.read_text()
    assert not failures
    # Memory: after a warm-up quarter, RSS stays within 5 MiB of its level then.
    warm = rss[len(rss) // 4]
    print(f"churn watch RSS KiB: start {rss[0]}, at 1/4 {warm}, end {rss[-1]}, max {max(rss)}; {i} rounds")
    assert max(rss[len(rss) // 4:]) - warm < 5 * 1024
    events = {a["alert"]["kind"] for a in churn.lines("alert")}
    assert {"namespace-gone", "device-gone"} <= events
    cycles = churn.lines("stop")[0]["cycles"]
    assert cycles >= CHURN_S / 0.5 * 0.8
    assert clean.lines("alert") == [], [a["alert"]["summary"] for a in clean.lines("alert")]
    assert clean.lines("stop")[0]["cycles"] >= CHURN_S * 0.8


def test_loss_fault_raises_a_drop_reason_anomaly_with_the_tracer(lab, tmp_path):
    """A `loss` fault moves no interface counter (docs/lab.md): with the tracer
    the watch sees its NETFILTER_DROPs on the device and nowhere else. The rule
    matches in the bridge's netfilter hook (physdev-in), where the kernel's
    skb->dev is the bridge: the eBPF backend places it there, tracefs on the port."""
    port = _free_port()
    bg = subprocess.Popen(["ip", "netns", "exec", lab.netns("vm1"), "ping", "-q", "-i", "0.02", lab.ip("vm3")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w = WatchProc(tmp_path, f"""
interval_s = 0.5
tracer = true
namespaces = {_ns_list(lab)}
""", "--listen", f"127.0.0.1:{port}")
    try:
        wait_for(lambda: _cycles(port) >= 5, 20, "the baselines' warm-up")
        lab.add_fault("loss", at="hv1:vm1-p", percent=50)
        hit = wait_for(lambda: w.alerts("raised", "drop_anomaly"), 15, "a drop anomaly")[0]["alert"]
        c = _cycles(port)
        wait_for(lambda: _cycles(port) >= c + 3, 10, "three more cycles")
        if w.lines("start")[0]["tracer"]["backend"] == "ebpf":
            # The same /metrics carries the kernel's counts: once the traffic
            # stops they settle on the rule's own packet counter.
            bg.kill()
            bg.wait()
            wait_for(lambda: 0 < _rule_packets(lab, "hv1", "vnetdiag-fault") ==
                     _kernel_drops(port, lab.netns("hv1"), "br0", "NETFILTER_DROP"), 10,
                     "vnetdiag_kernel_drops_total equal to the rule's counter")
    finally:
        bg.kill()
        assert w.stop() == 0, w.err.read_text()
    backend = w.lines("start")[0]["tracer"]["backend"]
    device = "br0" if backend == "ebpf" else "vm1-p"
    assert hit["kind"] == "kfree_skb NETFILTER_DROP", hit
    assert hit["netns"] == lab.netns("hv1") and hit["device"] == device, (backend, hit)
    subjects = {a["alert"]["subject"] for a in w.lines("alert")}
    assert subjects == {f"{lab.netns('hv1')}/{device}"}, subjects


def test_builtin_actions_on_a_real_device(lab, tmp_path):
    """link-bounce leaves the device up and no journal behind; offloads-off turns
    the features off; qdisc-reset on a default root qdisc goes through pfifo."""
    import os

    from vnetdiag.model.watch import ActionSpec, Alert
    from vnetdiag.system.state import journals_dir
    from vnetdiag.system.undo import Journal, RunCommand
    from vnetdiag.watch import actions

    ns = lab.netns("hv1")
    guard = Journal(f"test-watch-actions-{os.getpid()}").open()
    guard.record(RunCommand(argv=("ip", "-n", ns, "link", "del", "wcht0")))
    subprocess.run(["ip", "-n", ns, "link", "add", "wcht0", "type", "veth", "peer", "name", "wcht1"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "wcht0", "up"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "wcht1", "up"], check=True)
    try:
        alert = Alert(detector="tx_stall", subject=f"{ns}/wcht0", kind="backlog-frozen", severity="critical",
                      summary="test", netns=ns, device="wcht0")
        path = f"/run/netns/{ns}"
        before = lab.run("hv1", ["ip", "-j", "link", "show", "wcht0"]).stdout
        r = actions.run(ActionSpec(kind="link-bounce"), alert, path, attempt=1, dry_run=False,
                        journal_owner="watch-action-test-1")
        assert r.status == "ok", r
        after = json.loads(lab.run("hv1", ["ip", "-j", "link", "show", "wcht0"]).stdout)[0]
        assert "UP" in after["flags"] and json.loads(before)[0]["ifindex"] == after["ifindex"]
        assert not (journals_dir() / "watch-action-test-1.jsonl").exists()
        r = actions.run(ActionSpec(kind="offloads-off", features=("gso", "gro")), alert, path, attempt=1,
                        dry_run=False, journal_owner="watch-action-test-2")
        assert r.status == "ok", r
        k = lab.run("hv1", ["ethtool", "-k", "wcht0"]).stdout
        assert "generic-segmentation-offload: off" in k and "generic-receive-offload: off" in k
        r = actions.run(ActionSpec(kind="qdisc-reset"), alert, path, attempt=1, dry_run=False,
                        journal_owner="watch-action-test-3")
        assert r.status == "ok" and "pfifo" in r.detail, r
        q = json.loads(lab.run("hv1", ["tc", "-j", "qdisc", "show", "dev", "wcht0"]).stdout)
        assert [x["kind"] for x in q if x.get("root")] == ["noqueue"]
        assert not (journals_dir() / "watch-action-test-3.jsonl").exists()
    finally:
        assert guard.undo() == []
