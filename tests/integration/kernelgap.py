"""The one gap the eBPF tracer cannot close: a drop the kernel never ran the
program for and counted nowhere (docs/tracing.md, "A drop the kernel says
nothing about"; a tracefs instance saw each such drop, the program did not).
Tests that compare traced drops with a kernel counter allow it only where
vnetdiag's own part is proven exact."""

from __future__ import annotations

from typing import Callable


def kernel_gap(result, counted: int, here: Callable) -> int:
    """How many of the ``counted`` drops at a place the program never ran for.

    ``here`` selects the place's tallies and records (both have netns_inode,
    ifindex, device, reason). Non-zero only when that is the one explanation:
    the program's own in-kernel tally there equals the records streamed there,
    none was lost or held back, and the gap is at most 1 % of ``counted`` (at
    least one). A record lost or misattributed by vnetdiag is never excused."""
    streamed = sum(1 for p in result.packets if here(p))
    tally = sum(t.count for t in result.tallies if here(t))
    if result.loss.lost or result.loss.suppressed or streamed != tally:
        return 0
    gap = counted - tally
    return gap if 0 < gap <= max(1, counted // 100) else 0
