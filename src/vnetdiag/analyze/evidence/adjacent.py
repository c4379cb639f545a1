"""One loss seen at adjacent counters is one verdict: both ends of a veth pair, a
stacked device and its lower one, a vxlan device and its underlay. The loss is
placed where the packet died: where the probe's packets were traced, else where
the kernel traced the drop, else where a counter names the most specific reason."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidate, Candidates, Context, is_generic

name = "adjacent"
source = "counter"
weight = 0.0  # merges only: adds no confidence of its own
confirm = ""

_CLOSE = 0.1


def candidates(ctx: Context, out: Candidates) -> None:
    pass


def _where_it_died(c: Candidate) -> tuple:
    return (c.probe_packets > 0, "trace" in c.counts, not is_generic(c.reason), len(c.kinds))


def merge(ctx: Context, out: Candidates) -> None:
    changed = True
    while changed:
        changed = False
        drops = [k for k, c in out.items() if c.cause == "drop" and c.netns is not None and c.device is not None]
        for k in drops:
            a = out.get(k)
            if a is None:
                continue
            for nb in ctx.neighbours(k[0], k[1]):
                bk = (nb[0], nb[1], "drop")
                b = out.get(bk)
                if b is None or bk == k or not a.count or not b.count:
                    continue
                if abs(a.count - b.count) > _CLOSE * max(a.count, b.count):
                    continue
                keep, fold = (k, bk) if _where_it_died(a) >= _where_it_died(b) else (bk, k)
                out.merge(keep, fold)
                changed = True
                break
            if changed:
                break
