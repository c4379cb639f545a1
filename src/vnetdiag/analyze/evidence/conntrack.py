"""A full (or failing) connection-tracking table: conntrack's drop and
insert_failed counters in a namespace; netfilter drops made by the hook itself
(nf_hook_slow) in that namespace are the table's refusals."""

from __future__ import annotations

from vnetdiag.analyze.drops import location_function
from vnetdiag.analyze.evidence.base import Candidates, Context
from vnetdiag.analyze.evidence.packets import device_of, probe_packets
from vnetdiag.model.diagnosis import Evidence

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
    _split_hook_packets(ctx, out, tables)
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


def _split_hook_packets(ctx: Context, out: Candidates, tables: dict) -> None:
    """A place where both a rule (nft_do_chain) and the hook (nf_hook_slow)
    dropped: the probe's packets the hook refused were the table's, whatever
    other traffic the rule dropped there (records say where each one died)."""
    moved: dict[tuple, dict[str, int]] = {}
    for p, d in probe_packets(ctx):
        if (p.netns_inode in tables and p.reason == "NETFILTER_DROP"
                and location_function(p.location) == "nf_hook_slow"):
            by_dir = moved.setdefault((p.netns_inode, device_of(ctx, p), "drop"), {})
            by_dir[d] = by_dir.get(d, 0) + 1
    for key, by_dir in moved.items():
        c = out.get(key)
        if c is None or not c.locations or c.locations <= {"nf_hook_slow"}:
            continue  # a place of hook drops only: merged whole below
        table = out[tables[key[0]]]
        for d, n in by_dir.items():
            c.directions[d] = max(0, c.directions.get(d, 0) - n)
            table.directions[d] = table.directions.get(d, 0) + n
            c.probe_packets = max(0, c.probe_packets - n)
            table.probe_packets += n
        c.directions = {d: n for d, n in c.directions.items() if n}
        if "trace" in c.counts:  # the place's traced count held them too
            c.counts["trace"] = max(0, c.counts["trace"] - sum(by_dir.values()))
        table.reason = "NETFILTER_DROP (conntrack)"
        table.evidence.append(Evidence(source="trace", count=sum(by_dir.values()), text=(
            f"{sum(by_dir.values())} of the probe's packets refused by the netfilter hook (nf_hook_slow) at "
            f"{ctx.where(c)}: the table's, not a rule's")))
