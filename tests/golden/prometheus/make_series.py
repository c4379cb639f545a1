"""Turn the recorded lab snapshots (tests/golden/watch/*.jsonl.gz) into promtool
input series, exactly as `vnetdiag export` would have served them.

    .venv/bin/python tests/golden/prometheus/make_series.py > /tmp/vnetdiag.rules.test.yml
    promtool test rules /tmp/vnetdiag.rules.test.yml

Fills vnetdiag.rules.test.in.yml's ``@series NAME@`` lines with input_series
(the metrics the rules use), one sample per recorded snapshot. The snapshots
were taken every 0.5 s; here they are laid out one per ``STEP`` (15 s), i.e.
time runs 30x slower than it did, so that the rules' 1-minute windows span
several real samples. Values are the recorded ones, unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vnetdiag.export.metrics import snapshot_families
from vnetdiag.watch import recording

HERE = Path(__file__).parent
GOLDEN = HERE.parent / "watch"
STEP = "15s"
USED = {
    "vnetdiag_network_transmit_packets_total", "vnetdiag_network_receive_drop_total",
    "vnetdiag_network_transmit_drop_total", "vnetdiag_network_rx_missed_errors_total",
    "vnetdiag_qdisc_drops_total", "vnetdiag_qdisc_packets_total", "vnetdiag_qdisc_current_queue_length", "vnetdiag_netstat_Tcp_RetransSegs_total",
    "vnetdiag_netstat_TcpExt_ListenOverflows_total", "vnetdiag_softnet_dropped_total",
    "vnetdiag_softnet_times_squeezed_total", "vnetdiag_nf_conntrack_entries", "vnetdiag_nf_conntrack_entries_limit",
    "vnetdiag_nf_conntrack_stat_drop_total", "vnetdiag_nf_conntrack_stat_insert_failed_total",
    "vnetdiag_nf_conntrack_stat_early_drop_total", "vnetdiag_network_carrier_changes_total", "vnetdiag_network_mtu_bytes",
    "vnetdiag_network_info", "vnetdiag_snapshot_problems", "vnetdiag_scrape_netns_success",
}


def _series_key(name: str, labels: dict) -> str:
    lab = {"instance": "lab", "job": "vnetdiag", **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(lab.items()))
    return f"{name}{{{inner}}}"


def series(name: str) -> dict[str, list]:
    _, snaps = recording.load(GOLDEN / f"{name}.jsonl.gz")
    out: dict[str, list] = {}
    for i, snap in enumerate(snaps):
        for fam in snapshot_families(snap):
            for s in fam.samples:
                if s.name not in USED:
                    continue
                key = _series_key(s.name, s.labels)
                vals = out.setdefault(key, [None] * len(snaps))
                vals[i] = s.value
    return out


def render(data: dict[str, list]) -> str:
    lines = []
    for key, vals in sorted(data.items()):
        text = " ".join("_" if v is None else f"{v:g}" for v in vals)
        lines.append(f"- series: '{key}'\n  values: '{text}'")
    return "\n".join(lines) + "\n"


def test_file(rules: Path = HERE.parents[2] / "contrib" / "prometheus" / "vnetdiag.rules.yml") -> str:
    """The promtool test file: the template with the recorded series filled in."""
    out = []
    for line in (HERE / "vnetdiag.rules.test.in.yml").read_text().splitlines():
        if line.startswith("@series "):
            text = render(series(line.split()[1].rstrip("@")))
            out.extend("      " + x for x in text.splitlines())
        else:
            out.append(line.replace("@rules@", str(rules)))
    return "\n".join(out) + "\n"


def main() -> None:
    sys.stdout.write(test_file())


if __name__ == "__main__":
    main()
