"""Record the rows the CLI's tables are built from, from a real lab on this machine.

    VNETDIAG_LAB_PREFIX=hc vnetdiag lab up
    VNETDIAG_LAB_PREFIX=hc .venv/bin/python tests/golden/tables/record.py

Writes inventory.json (report.inventory.rows of every lab namespace), counters.json
(report.counters.snapshot_rows with --all) and path.json (the hops of vm1 -> vm3
after a ping, so the FDBs have learned). Addresses and MACs are the lab's own.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from vnetdiag.collect import Collector
from vnetdiag.report import counters, inventory

HERE = Path(__file__).resolve().parent


def main() -> None:
    prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "hc")
    subprocess.run(["ip", "netns", "exec", f"{prefix}-vm1", "ping", "-c", "2", "-i", "0.2", "198.51.100.3"],
                   check=True, capture_output=True)
    names = {f"{prefix}-{n}" for n in ("fabric", "hv1", "hv2", "vm1", "vm2", "vm3")}
    with Collector(only=lambda ns: ns.name in names, driver_stats=False) as col:
        snap = col.snapshot()
        (HERE / "inventory.json").write_text(json.dumps(inventory.rows(snap), indent=1) + "\n")
        rows = [list(r) for r in counters.snapshot_rows(snap, all_counters=True)]
        (HERE / "counters.json").write_text(json.dumps(rows, indent=1) + "\n")
    out = subprocess.run(["vnetdiag", "path", f"{prefix}-vm1", f"{prefix}-vm3", "--json"], capture_output=True,
                         text=True, check=False)
    (HERE / "path.json").write_text(out.stdout)


if __name__ == "__main__":
    main()
