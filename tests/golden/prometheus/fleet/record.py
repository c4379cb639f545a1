"""Record what `vnetdiag export --drops` serves on three simulated hosts (run as root, ~45 s):

    sudo .venv/bin/python tests/golden/prometheus/fleet/record.py

Builds testing/promsim.DropHosts (three hosts, one exporter each), runs its
traffic (400 delivered + 20 refused UDP datagrams/s per host), and scrapes
every exporter once a second: ``CLEAN_S`` seconds as is, then ``FAULT_S``
seconds with half of host 2's delivered stream dropped by an iptables rule.
Writes export-drops.jsonl here: one line per scrape, {"t_s", "host", "phase",
"text"} where text is the exporter's vnetdiag_kernel_drops* lines, verbatim.
test_fleet_rules.py turns them into promtool input series.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path

from vnetdiag.testing.promsim import DropHosts

HERE = Path(__file__).parent
CLEAN_S = 10
FAULT_S = 30


def scrape(sim: DropHosts, t0: float, phase: str, out) -> None:
    for i in range(1, sim.n + 1):
        text = urllib.request.urlopen(sim.url(i), timeout=5).read().decode()  # noqa: S310 - loopback
        kept = "".join(line + "\n" for line in text.splitlines() if "vnetdiag_kernel_drops" in line)
        out.write(json.dumps({"t_s": round(time.monotonic() - t0, 3), "host": sim.name(i), "phase": phase,
                              "text": kept}) + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, DropHosts(Path(tmp), prefix="pfrec", hosts=3) as sim, \
            (HERE / "export-drops.jsonl").open("w") as out:
        with sim.traffic(delivered_per_s=400, refused_per_s=20):
            t0 = time.monotonic()
            for n in range(CLEAN_S + FAULT_S):
                if n == CLEAN_S:
                    fault = sim.fault(2, probability=0.5)
                    fault.__enter__()
                scrape(sim, t0, "clean" if n < CLEAN_S else "fault", out)
                time.sleep(max(0.0, t0 + n + 1 - time.monotonic()))  # a recorder's pace, not a test's wait
            fault.__exit__(None, None, None)
        (HERE / "export-drops-full.txt").write_text(
            urllib.request.urlopen(sim.url(2), timeout=5).read().decode())  # noqa: S310


if __name__ == "__main__":
    main()
