"""A real Prometheus on loopback scrapes `vnetdiag export` on the lab, evaluates
contrib/prometheus/vnetdiag.rules.yml, and an alert fires for an injected fault."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest

from watchproc import VNETDIAG, wait_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")]
RULES = __import__("pathlib").Path(__file__).parents[2] / "contrib" / "prometheus" / "vnetdiag.rules.yml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    try:
        return json.loads(urllib.request.urlopen(url, timeout=2).read())
    except (OSError, ValueError):
        return None


def _dashboard_queries() -> list[str]:
    dash = json.loads((RULES.parents[1] / "grafana" / "vnetdiag.json").read_text())
    out = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    out += [v["query"].replace("label_values(", "group by (x) (").rsplit(",", 1)[0] + ")"
            for v in dash["templating"]["list"] if v["type"] == "query"]
    return [e.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$netns", ".*") for e in out]


def _firing(prom: str, name: str) -> list[dict]:
    doc = _get(f"{prom}/api/v1/alerts") or {}
    return [a for a in doc.get("data", {}).get("alerts", []) if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


def test_prometheus_fires_conntrack_alert_from_vnetdiag_export(global_settings, lab, tmp_path):
    exp_port, prom_port = _free_port(), _free_port()
    # The shipped rules, with their `for:` durations zeroed to fit a test's time.
    rules = tmp_path / "rules.yml"
    rules.write_text(re.sub(r"\bfor: \S+", "for: 0s", RULES.read_text()))
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: vnetdiag
    static_configs: [{{targets: ["127.0.0.1:{exp_port}"]}}]
""")
    ns_args = [a for n in ("fabric", "hv1", "hv2", "vm1", "vm2", "vm3") for a in ("--netns", lab.netns(n))]
    exporter = subprocess.Popen([VNETDIAG, "export", "--listen", f"127.0.0.1:{exp_port}", *ns_args],
                                stderr=subprocess.PIPE, text=True)
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{prom_port}"
    try:
        def target_up():
            doc = _get(f"{url}/api/v1/targets") or {}
            return any(t["health"] == "up" for t in doc.get("data", {}).get("activeTargets", []))
        wait_for(target_up, 30, "Prometheus to scrape vnetdiag export", step_s=0.2)
        q = _get(f"{url}/api/v1/query?query=vnetdiag_nf_conntrack_entries_limit") or {}
        assert {r["metric"]["netns"] for r in q["data"]["result"]} >= {lab.netns("hv1")}
        assert _firing(url, "VnetdiagConntrackNearlyFull") == []
        lab.add_fault("conntrack-full", at="hv1", max=64)
        alerts = wait_for(lambda: _firing(url, "VnetdiagConntrackNearlyFull"), 20, "the conntrack alert",
                          step_s=0.2)
        assert [a["labels"]["netns"] for a in alerts] == [lab.netns("hv1")]
        # Every query of the Grafana dashboard is valid PromQL for this Prometheus,
        # and the conntrack panel shows the full table.
        for expr in _dashboard_queries():
            doc = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
            assert doc and doc["status"] == "success", expr
            if "nf_conntrack_entries_limit" in expr:
                use = {r["metric"]["netns"]: float(r["value"][1]) for r in doc["data"]["result"]}
                assert use[lab.netns("hv1")] >= 1.0  # full (the count may pass a lowered max)
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        exporter.send_signal(signal.SIGTERM)
        rc = exporter.wait(timeout=15)
    assert rc == 0, exporter.stderr.read()
