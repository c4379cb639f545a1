"""Protocol counters that name a cause, in the namespaces on the path:
reverse-path filtering, no route, fragmentation and reassembly failures,
packets too big for a link. They say *why* but not on which device; a traced
drop in the same namespace whose kernel reason says the same thing gives the
device, and the two are one verdict typed by the cause.
"""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context

name = "protocol"
source = "counter"
weight = 0.35
confirm = ("nstat -az in {netns} (or /proc/net/snmp, netstat, snmp6): the counter grows with the tails; "
           "fixing the cause (a route back, rp_filter, an MTU) must stop it")

# cause -> (counters as (section, name); section "snmp6" for /proc/net/snmp6),
# and the words in a kernel drop reason that say the same thing.
CAUSES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "rp-filter": ((("TcpExt", "IPReversePathFilter"),), ("RPFILTER",)),
    "no-route": ((("IpExt", "InNoRoutes"), ("Ip", "OutNoRoutes"), ("snmp6", "Ip6InNoRoutes"),
                  ("snmp6", "Ip6OutNoRoutes")), ("NOROUTE",)),
    "fragmentation": ((("Ip", "ReasmFails"), ("snmp6", "Ip6ReasmFails")), ("FRAG",)),
    "mtu-mismatch": ((("Ip", "FragFails"), ("snmp6", "Ip6FragFails"), ("snmp6", "Icmp6OutPktTooBigs"),
                      ("snmp6", "Ip6InTooBigErrors")), ("TOO_BIG",)),
}


def cause_of_reason(reason: str | None) -> str | None:
    for cause, (_counters, words) in CAUSES.items():
        if reason and any(w in reason for w in words):
            return cause
    return None


def candidates(ctx: Context, out: Candidates) -> None:
    for n in ctx.delta.namespaces:
        if ctx.path_netns and n.netns_inode not in ctx.path_netns:
            continue
        moved = {(sec, m.name): m.delta for sec, m in n.snmp if m.delta > 0}
        moved.update({("snmp6", m.name): m.delta for m in n.snmp6 if m.delta > 0})
        for cause, (counters, _words) in CAUSES.items():
            hits = {f"{sec}:{c}" if sec != "snmp6" else c: moved[(sec, c)] for sec, c in counters if (sec, c) in moved}
            if not hits:
                continue
            total = max(hits.values())
            c = out.at(n.netns_inode, None, cause, reason=max(hits, key=hits.get))
            listed = ", ".join(f"{k} +{v}" for k, v in sorted(hits.items()))
            c.add(name, total, source, f"{listed} in {ctx.name(n.netns_inode)}")


def merge(ctx: Context, out: Candidates) -> None:
    """A namespace's cause counter and the traced drops there with that reason: one
    verdict on the traced device, typed by the cause; an untraced reason still types
    the drops counted on the path in that namespace when the counts agree."""
    for pk in [k for k, c in out.items() if name in c.counts and c.device is None]:
        p = out.get(pk)
        if p is None:
            continue
        ns, _none, cause = pk
        traced = [k for k, c in out.items() if c.netns == ns and c.device is not None and c.cause == "drop"
                  and cause_of_reason(c.reason) == cause]
        for k in traced:
            d = out.pop(k)
            target = out.at(ns, d.device, cause)
            target.absorb(d, reason=True)
        if traced:
            dev = next(k[1] for k in out if k[0] == ns and k[2] == cause and k[1] is not None)
            out[(ns, dev, cause)].absorb(out.pop(pk))
