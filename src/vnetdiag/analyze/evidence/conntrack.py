"""A full (or failing) connection-tracking table: conntrack's drop and
insert_failed counters in a namespace; netfilter drops made by the hook itself
(nf_hook_slow) in that namespace are the table's refusals."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

name = "conntrack"
source = "counter"
weight = 0.45
confirm = ("conntrack -S in {netns}: drop/insert_failed grow with each new connection; "
           "raising nf_conntrack_max (or shortening timeouts) must stop them")

_LOSS = ("drop", "insert_failed")


def candidates(ctx: Context, out: Candidates) -> None:
    for n in ctx.delta.namespaces:
        moves = {m.name: m.delta for m in n.conntrack if m.delta > 0}
        lost = sum(moves.get(k, 0) for k in _LOSS)
        if not lost:
            continue
        c = out.at(n.netns_inode, None, "conntrack-full", reason="conntrack drop")
        table = f"; table {n.conntrack_count}/{n.conntrack_limit} entries" if n.conntrack_limit else ""
        listed = ", ".join(f"{k} +{v}" for k, v in sorted(moves.items()))
        c.add(name, lost, source, f"conntrack in {ctx.name(n.netns_inode)}: {listed}{table}")


def merge(ctx: Context, out: Candidates) -> None:
    tables = {c.netns: k for k, c in out.items() if c.cause == "conntrack-full"}
    for k in [k for k, c in out.items() if c.cause == "drop" and c.netns in tables and c.reason == "NETFILTER_DROP"
              and "rule" not in c.counts and c.locations and c.locations <= {"nf_hook_slow"}]:
        table = out[tables[out[k].netns]]
        hook = out.pop(k)
        table.probe_packets += hook.probe_packets
        for d, n in hook.directions.items():
            table.directions[d] = table.directions.get(d, 0) + n
        hook.probe_packets, hook.directions = 0, {}
        table.absorb(hook)
        table.reason = "NETFILTER_DROP (conntrack)"
