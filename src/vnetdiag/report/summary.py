"""Summary lines of bounded length: counted labels grouped and capped.

A capture of a SYN flood against a full table gives every retransmission
attempt its own label (``syn-retrans-1`` ... ``syn-retrans-40``), and a long
capture gives thousands of flows; a summary line must stay readable whatever
the input, so numbered families are grouped from a threshold on and the list
is capped with a count of what was left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_PARTS = 6
"""Labels shown in one summary line; the rest are counted as "N more"."""

# (pattern, first grouped value, label of the group): the k-th SYN retransmission
# and the RTO after many doublings are one story once they are past the usual.
_FAMILIES: tuple[tuple[re.Pattern[str], int, str], ...] = (
    (re.compile(r"^syn-retrans-(\d+)$"), 6, "syn-retrans-6+"),
    (re.compile(r"^rto-x(\d+)$"), 32, "rto-x32+"),
)


def group(counts: Mapping[str, int]) -> dict[str, int]:
    """Numbered labels past their family's threshold merged into one, largest first."""
    out: dict[str, int] = {}
    for label, n in counts.items():
        for pattern, first, grouped in _FAMILIES:
            m = pattern.match(label)
            if m and int(m.group(1)) >= first:
                label = grouped
                break
        out[label] = out.get(label, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def counted(counts: Mapping[str, int], *, count_first: bool = False, max_parts: int = MAX_PARTS,
            empty: str = "none") -> str:
    """``min-rto 12, syn-retrans-6+ 40, ... 3 more (7)``: at most ``max_parts`` labels."""
    grouped = group(counts)
    if not grouped:
        return empty
    items = list(grouped.items())
    parts = [f"{n} {label}" if count_first else f"{label} {n}" for label, n in items[:max_parts]]
    rest = items[max_parts:]
    if rest:
        parts.append(f"{len(rest)} more ({sum(n for _l, n in rest)})")
    return ", ".join(parts)
