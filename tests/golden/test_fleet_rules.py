"""contrib/prometheus/vnetdiag-fleet.rules.yml under `promtool test rules`, on series
recorded from three real `vnetdiag export --drops` exporters (prometheus/fleet/record.py).

The recording: one scrape per second per host, 10 clean, then 30 with half of
host 2's delivered stream dropped (NETFILTER_DROP). Here each scrape is laid
out one per ``STEP`` (15 s, so time runs 15x slower than it did, and the
rules' 5-minute windows span 20 real scrapes); values and label sets are the
exporter's, unchanged, with the ``host``/``role`` labels a scrape config adds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent / "prometheus" / "fleet"
RULES = Path(__file__).parents[2] / "contrib" / "prometheus" / "vnetdiag-fleet.rules.yml"
ALERT = "VnetdiagHostDropsDepartFromPeers"
STEP = "15s"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")


def recorded_series(hosts: set[str] | None = None) -> dict[str, list[float | None]]:
    """promtool series keys -> one value per scrape (None before a place first dropped)."""
    from prometheus_client.parser import text_string_to_metric_families

    scrapes = [json.loads(line) for line in (HERE / "export-drops.jsonl").read_text().splitlines()]
    rounds = sorted({s["t_s"] // 1 for s in scrapes})
    out: dict[str, list] = {}
    for s in scrapes:
        if hosts is not None and s["host"] not in hosts:
            continue
        n = rounds.index(s["t_s"] // 1)
        for fam in text_string_to_metric_families(s["text"]):
            for sample in fam.samples:
                labels = {"job": "vnetdiag", "instance": f"{s['host']}:9469", "host": s["host"],
                          "role": "hypervisor", **sample.labels}
                key = sample.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                out.setdefault(key, [None] * len(rounds))[n] = sample.value
    return out


def input_series(hosts: set[str] | None = None) -> list[dict]:
    return [{"series": key, "values": " ".join("_" if v is None else f"{v:g}" for v in vals)}
            for key, vals in sorted(recorded_series(hosts).items())]


def rules_without_annotations(tmp_path: Path) -> Path:
    """The rules with the alert's annotations left out: promtool compares annotations
    exactly, and the summary carries the humanized rate; the logic is unchanged."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp_path / "fleet.rules.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def promtool_test(tmp_path: Path, tests: list[dict]) -> subprocess.CompletedProcess:
    path = tmp_path / "fleet.rules.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(rules_without_annotations(tmp_path))],
                                    "evaluation_interval": STEP, "tests": tests}))
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check():
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 6 rules found" in r.stdout, r.stdout + r.stderr


def test_recording_has_what_the_rules_use():
    metrics = set(re.findall(r"\b(vnetdiag_\w+)", RULES.read_text()))
    recorded = {key.split("{")[0] for key in recorded_series()}
    assert metrics == {"vnetdiag_kernel_drops_total"} and metrics <= recorded, (metrics, recorded)


def test_ranking_and_alert_name_the_faulty_host_only(tmp_path):
    h2 = {"host": "h2", "role": "hypervisor"}
    test = {
        "name": "three hypervisors, host 2 drops half its stream from 150 s on",
        "interval": STEP,
        "input_series": input_series(),
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": ALERT, "exp_alerts": []},  # clean: the peers look alike
            {"eval_time": "9m", "alertname": ALERT, "exp_alerts": [{"exp_labels": {**h2, "severity": "warning"}}]},
        ],
        "promql_expr_test": [
            # The worst place of the fleet: host 2's receiver device, by the fault's reason.
            {"expr": "topk(1, vnetdiag:kernel_drops:top10) * 0 + 1", "eval_time": "9m",
             "exp_samples": [{"labels": '{device="pfrec2v",host="h2",netns="pfrec2r",reason="NETFILTER_DROP",'
                                        'role="hypervisor"}', "value": 1}]},
            {"expr": "vnetdiag:role_hosts:count", "eval_time": "9m",
             "exp_samples": [{"labels": 'vnetdiag:role_hosts:count{role="hypervisor"}', "value": 3}]},
            # Before the fault no host is above three times the median (plus 1/s).
            {"expr": "count(vnetdiag:host_drops:rate5m > on (role) group_left () "
                     "(3 * vnetdiag:role_drops:median_rate5m + 1)) or vector(0)",
             "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 0}]},
        ],
    }
    r = promtool_test(tmp_path, [test])
    assert r.returncode == 0 and "SUCCESS" in r.stdout, (r.stdout + r.stderr)[-3000:]


def test_no_alert_with_fewer_than_three_peers(tmp_path):
    """The same fault with only one peer: a median of two is no baseline, so no alert."""
    test = {"name": "two hypervisors", "interval": STEP, "input_series": input_series({"h1", "h2"}),
            "alert_rule_test": [{"eval_time": "9m", "alertname": ALERT, "exp_alerts": []}]}
    r = promtool_test(tmp_path, [test])
    assert r.returncode == 0 and "SUCCESS" in r.stdout, (r.stdout + r.stderr)[-3000:]
