"""The pcap command's filter and view, and the retransmission signatures."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from vnetdiag.analyze.signatures import classify_retransmission, classify_timer
from vnetdiag.capture import analyze_file
from vnetdiag.cli.pcap_view import apply_filter, parse_filter, render
from vnetdiag.errors import UsageError
from vnetdiag.model import signatures as sig

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pcap"


@pytest.mark.parametrize(("gap_ms", "syn", "fast", "spurious", "tail", "attempt", "label"), [
    (205.0, False, False, False, False, 1, "min-rto"),
    (212.0, False, False, True, True, 1, "min-rto"),   # a timer that fired, even if spurious
    (415.0, False, False, False, False, 2, "rto-x2"),
    (830.0, False, False, False, False, 3, "rto-x4"),
    (1018.0, True, False, False, False, 1, "syn-retrans-1"),
    (1024.0, True, False, False, False, 3, "syn-retrans-3"),  # linear 1 s retries (kernel >= 6.5)
    (2050.0, True, False, False, False, 2, "syn-retrans-2"),  # doubling retries
    (4.0, False, False, False, True, 1, "tlp"),
    (4.0, False, False, False, False, 1, "other"),
    (0.5, False, True, False, False, 1, "fast-retrans"),
    (50.0, False, False, True, False, 1, "spurious"),
    (600.0, True, False, False, False, 1, "other"),
])
def test_signatures(gap_ms, syn, fast, spurious, tail, attempt, label):
    assert classify_retransmission(gap_ms=gap_ms, syn=syn, fast=fast, spurious=spurious, tail=tail,
                                   attempt=attempt) == label


def test_timer_vocabulary_is_shared():
    assert classify_timer(201.0) == sig.rto(0) == sig.MIN_RTO
    assert classify_timer(3000.0, syn=True) == sig.OTHER  # 3 s is not 1 s * 2**k within tolerance
    assert sig.is_timeout("rto-x8") and sig.is_timeout("syn-retrans-2") and not sig.is_timeout(sig.TLP)


def test_filter_terms_and_errors():
    assert parse_filter("tcp and port 7100") == [("tcp", None), ("port", 7100)]
    with pytest.raises(UsageError, match="cannot understand"):
        parse_filter("tcp frobnicate")
    with pytest.raises(UsageError, match="needs an address"):
        parse_filter("host nowhere")


def test_filter_keeps_matching_conversations_and_their_retransmissions():
    rep = analyze_file(GOLDEN / "loss-vxlan.pcap")
    tcp = apply_filter(rep, parse_filter("tcp retrans"))
    assert tcp.conversations and all(c.proto == "tcp" and c.retransmissions for c in tcp.conversations)
    assert len(tcp.retransmissions) == len(rep.retransmissions)
    udp = apply_filter(rep, parse_filter("udp port 4789"))
    assert udp.conversations and all(c.vxlan_outer for c in udp.conversations) and not udp.retransmissions
    none = apply_filter(rep, parse_filter("host 203.0.113.9"))
    assert not none.conversations and not none.flows


def test_text_view_names_the_signatures():
    rep = analyze_file(GOLDEN / "conntrack-full.pcap")
    buf = io.StringIO()
    render(rep, Console(file=buf, width=200, emoji=False), top=5, flows=False, retrans=True)
    text = buf.getvalue()
    assert "Conversations (5 of 61" in text and "syn-retrans-1 60" in text and "Retransmitted segments" in text
