"""The shared vocabulary of timer signatures: why a packet or a transaction was late.

A 200 ms latency tail seen by the probe and a data segment retransmitted 200 ms
after its original in a capture are the same story (the minimum RTO fired), so
both name it the same way. The labels are plain strings so they can be stored
in result documents; this module only builds and recognises them.

Labels:
  ``min-rto``                the first retransmission timeout (Linux: 200 ms + RTT)
  ``rto-x2``, ``rto-x4``...  the RTO after 1, 2, ... exponential backoffs
  ``syn-retrans-<k>``        the k-th SYN or SYN-ACK retransmission (1 s, 2 s, 4 s gaps;
                             cumulative 1 s, 3 s, 7 s from the first SYN)
  ``tlp``                    a tail-loss probe (retransmits the last segment after ~2 RTT, < min RTO)
  ``fast-retrans``           a fast retransmission after duplicate ACKs
  ``spurious``               a retransmission of data already acknowledged
  ``delayed-ack``            a delayed-ACK wait (40 ms on Linux)
  ``other``                  none of the above
"""

from __future__ import annotations

MIN_RTO = "min-rto"
TLP = "tlp"
FAST_RETRANS = "fast-retrans"
SPURIOUS = "spurious"
DELAYED_ACK = "delayed-ack"
OTHER = "other"

MIN_RTO_MS = 200.0
"""Linux TCP_RTO_MIN: the RTO of a connection whose RTT is small."""
SYN_RTO_MS = 1000.0
"""Linux TCP_TIMEOUT_INIT: the first SYN (and SYN-ACK) retransmission timeout."""
DELAYED_ACK_MS = 40.0
"""Linux TCP_DELACK_MIN."""


def rto(backoffs: int) -> str:
    """The label of an RTO after ``backoffs`` doublings: 0 -> min-rto, 1 -> rto-x2."""
    return MIN_RTO if backoffs <= 0 else f"rto-x{2 ** backoffs}"


def syn_retrans(k: int) -> str:
    """The label of the k-th (1-based) SYN or SYN-ACK retransmission."""
    return f"syn-retrans-{max(1, k)}"


def is_timeout(label: str) -> bool:
    """True for labels that mean a retransmission timer expired (RTO or SYN)."""
    return label == MIN_RTO or label.startswith("rto-x") or label.startswith("syn-retrans-")
