"""The fleet's Prometheus side, live: Debian's prometheus scraping three real
`vnetdiag export --drops` exporters (one per simulated host, testing/promsim.py)
with contrib/prometheus/vnetdiag-fleet.rules.yml loaded, while host 2 drops
half of its delivered stream (iptables statistic rule, NETFILTER_DROP).

`vnetdiag fleet top --prometheus URL --json` must rank host 2's receiver device
first with the diagnose command for it, and the peer-deviation alert must be
fire (with its `for:` zeroed) for host 2 only. Everything waits on the Prometheus API; nothing sleeps.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vnetdiag.testing.plugin import derived_prefix

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian) not installed"),
              pytest.mark.skipif(shutil.which("bpftrace") is None, reason="export --drops needs bpftrace")]

RULES = Path(__file__).parents[2] / "contrib" / "prometheus" / "vnetdiag-fleet.rules.yml"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
ALERT = "VnetdiagHostDropsDepartFromPeers"


def test_fleet_top_ranks_the_faulty_host_first_and_only_it_alerts(tmp_path):
    from vnetdiag.testing.promsim import DropHosts, Prometheus

    # The shipped rules with the alert's `for:` zeroed, so it fires within a test's time.
    rules = tmp_path / "fleet.rules.yml"
    rules.write_text(re.sub(r"\bfor: \S+", "for: 0s", RULES.read_text()))
    with DropHosts(tmp_path / "hosts", prefix=derived_prefix("p"), hosts=3) as sim, \
            sim.traffic(delivered_per_s=400, refused_per_s=20), sim.fault(2, probability=0.5), \
            Prometheus(tmp_path / "prom", targets=sim.targets(), rules=[rules]) as prom:
        prom.wait(lambda: len(prom.query("up == 1")) == 3, what="three targets up")
        active = prom.wait(lambda: [a for a in prom.alerts() if a["labels"]["alertname"] == ALERT
                                    and a["state"] == "firing"], what=f"{ALERT} to fire")
        # Every host has exported its background NO_SOCKET drops by now (the alert needs >= 3 hosts).
        assert {a["labels"]["host"] for a in active} == {"h2"}, active

        r = subprocess.run([VNETDIAG, "--json", "fleet", "top", "--prometheus", prom.url, "--hosts", "hosts.ini"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r.stderr  # places with drops: status 1, like diagnose with verdicts
        doc = json.loads(r.stdout)
        assert doc["schema"] == "vnetdiag.fleet-top/1"
        first = doc["places"][0]
        assert (first["host"], first["netns"], first["device"], first["reason"]) == \
            ("h2", sim.receiver(2), sim.device(2), "NETFILTER_DROP"), doc["places"]
        assert first["role"] == "hypervisor" and first["rate_per_s"] > 0
        assert first["next"][0] == f"vnetdiag drops --hosts hosts.ini --netns h2:{sim.receiver(2)} --duration 10"
        assert f"vnetdiag diagnose --hosts hosts.ini --from h2:{sim.receiver(2)} --to PEER:NAMESPACE" in \
            first["next"][1], first["next"]
        # The other hosts' places are their background drops only, each below host 2's fault.
        others = [p for p in doc["places"] if p["host"] != "h2"]
        assert {p["host"] for p in others} >= {"h1", "h3"}, doc["places"]
        assert all(p["rate_per_s"] < first["rate_per_s"] for p in others)
        assert [(a["host"], a["state"]) for a in doc["alerts"]] == [("h2", "firing")], doc["alerts"]
    assert not (tmp_path / "prom" / "data").exists(), "prometheus storage left behind"
    from vnetdiag.system.netns import list_named

    assert not [n for n in list_named() if n.startswith(sim.prefix)], "namespaces left behind"
