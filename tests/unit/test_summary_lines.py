"""Summary lines have a bounded length whatever the number of labels."""

from __future__ import annotations

from pathlib import Path

from vnetdiag.capture import analyze_file
from vnetdiag.model import signatures as sig
from vnetdiag.report.summary import MAX_PARTS, counted, group

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pcap"


def test_numbered_families_group_past_their_threshold():
    counts = {sig.syn_retrans(k): 10 for k in range(1, 41)} | {sig.rto(b): 3 for b in range(0, 12)}
    g = group(counts)
    assert g["syn-retrans-6+"] == 350 and g["syn-retrans-5"] == 10 and "syn-retrans-6" not in g
    assert g["rto-x32+"] == 3 * 7 and g["rto-x16"] == 3 and g[sig.MIN_RTO] == 3
    assert sum(g.values()) == sum(counts.values())
    assert list(g) == sorted(g, key=lambda k: -g[k])


def test_a_line_stays_short_with_thousands_of_labels():
    counts = {f"other-{i}": i for i in range(5000)} | {sig.syn_retrans(k): 1 for k in range(1, 200)}
    line = counted(counts)
    assert len(line) < 200
    assert line.count(",") == MAX_PARTS  # MAX_PARTS labels and the "N more" part
    assert line.endswith(f"more ({sum(counts.values()) - sum(sorted(group(counts).values())[-MAX_PARTS:])})")


def test_pcap_summary_of_a_real_capture_is_unchanged_when_short():
    rep = analyze_file(GOLDEN / "conntrack-full.pcap")
    line = counted(rep.signatures)
    assert line == ", ".join(f"{k} {v}" for k, v in rep.signatures.items())
    assert counted({}, empty="none") == "none"
