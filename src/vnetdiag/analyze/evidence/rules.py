"""Firewall rules that dropped packets (iptables and native nftables), as written.

One verdict per rule: the rule's counter is the count; traced drops in its
namespace that the netfilter verdict made (NETFILTER_DROP) are the same
packets, wherever the trace placed them, so they fold into the rule, and with
the eBPF backend they say how many of the probe's packets it dropped in each
direction. Where netfilter traced the probe's packets itself (``meta
nftrace``, collect/nftrace.py), the kernel named the rule that dropped each
one: that is the rule's count of the probe's packets, counter or not.
"""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context
from vnetdiag.model.diagnosis import Evidence

name = "rule"
source = "counter"
weight = 0.4
confirm = ("{netns}: the rule's counter (iptables -L -v -x, or nft list ruleset) grows with the tails; "
           "removing or narrowing the rule must stop them")

_NETFILTER = "NETFILTER_DROP"
_RX_HOOKS = ("prerouting", "input", "ingress")
_TX_HOOKS = ("output", "postrouting", "egress")


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def candidates(ctx: Context, out: Candidates) -> None:
    for d in ctx.bundle.rules:
        rule, n = d.rule, d.packets
        device = rule.in_device or rule.out_device
        c = out.at(rule.netns_inode, device, "drop")
        c.direction = c.direction or ("rx" if rule.in_device or rule.hook in _RX_HOOKS else
                                      "tx" if rule.out_device or rule.hook in _TX_HOOKS else "")
        c.queue = c.queue or f"{rule.table} {rule.chain}"
        c.reason = c.reason if c.reason and not c.reason.endswith(("dropped", "errors", "drops")) else \
            f"firewall rule {rule.target}"
        c.add(name, c.counts.get(name, 0) + n, source,
              f"{rule.where} in {ctx.name(rule.netns_inode)}: +{n} packets dropped by '{_short(rule.rule)}'")
    for t in ctx.bundle.rule_traces:
        _traced_rule(ctx, out, t)


NFTRACE = "nftrace"
"""Counts key of the probe's packets that netfilter tracing saw a rule drop."""


def _traced_rule(ctx: Context, out: Candidates, t) -> None:
    """The probe's packets a rule dropped, as netfilter's tracing named it: on
    the counted rule of the same chain when there is one (iptables shows its
    rules in another spelling than nft's trace), else a verdict of its own."""
    same = [k for k, c in out.items() if c.netns == t.netns_inode and name in c.counts
            and c.queue == f"{t.table} {t.chain}"]
    c = out[same[0]] if len(same) == 1 else out.at(t.netns_inode, None, "drop")
    c.queue = c.queue or f"{t.table} {t.chain}"
    if not c.reason or name not in c.counts:
        c.reason = "firewall rule DROP"
    n = t.forward + t.reverse
    c.counts[NFTRACE] = c.counts.get(NFTRACE, 0) + n
    # Kept apart from the eBPF tracer's count of the same packets until merge.
    for d, k in (("forward", t.forward), ("reverse", t.reverse)):
        c.counts[f"{NFTRACE} {d}"] = c.counts.get(f"{NFTRACE} {d}", 0) + k
    handle = f" (handle {t.handle})" if t.handle is not None else ""
    c.evidence.append(Evidence(source="trace", count=n, text=(
        f"netfilter tracing in {ctx.name(t.netns_inode)}: {t.family} {t.table} {t.chain}{handle} "
        f"'{_short(t.rule)}' dropped {n} of the probe's packets ({t.forward} towards the server, "
        f"{t.reverse} back)")))


def merge(ctx: Context, out: Candidates) -> None:
    rules = [k for k, c in out.items() if name in c.counts or NFTRACE in c.counts]
    for rk in rules:
        r = out.get(rk)
        if r is None:
            continue
        # The rule's own drops, wherever they were traced in its namespace. With
        # flows (eBPF), the probe's packets it dropped add up across directions;
        # netfilter's own tracing has counted them already (the same packets).
        named = NFTRACE in r.counts
        folded = [k for k, c in out.items() if k != rk and c.netns == r.netns and c.cause == "drop"
                  and c.reason == _NETFILTER and name not in c.counts and NFTRACE not in c.counts
                  and not _is_hook_drop(c)]
        probe, probe_packets = dict(r.directions), r.probe_packets
        traced = r.counts.get("trace", 0)
        for k in folded:
            c = out[k]
            for d, n in c.directions.items():
                probe[d] = probe.get(d, 0) + n
            probe_packets += c.probe_packets
            traced += c.counts.get("trace", 0)
            out.merge(rk, k, reason=True)
        # Several places' drops were this one rule's: they add up (absorb keeps the largest).
        r.directions, r.probe_packets = probe, probe_packets
        if named:
            # Two counts of the same packets: netfilter's trace reaches us through a
            # netlink socket that drops events when it overflows (a busy window), so
            # it may be low, never high; the larger is the count, in each direction.
            nft = {d: r.counts.pop(f"{NFTRACE} {d}", 0) for d in ("forward", "reverse")}
            if probe_packets > r.counts[NFTRACE]:
                r.evidence.append(Evidence(source="trace", count=probe_packets, text=(
                    f"netfilter tracing reported {r.counts[NFTRACE]} of the probe's packets here, the eBPF "
                    f"tracer {probe_packets}: the monitor missed events")))
            r.directions = {d: max(nft[d], probe.get(d, 0)) for d in nft if max(nft[d], probe.get(d, 0))}
            r.probe_packets = max(r.counts[NFTRACE], probe_packets)
        if traced:
            r.counts["trace"] = traced
    _merge_uncounted(ctx, out)


def _merge_uncounted(ctx: Context, out: Candidates) -> None:
    """A rule without a counter (common in native nftables) is read by no one,
    and the trace places its drops at each packet's input device: a rule dropping
    both directions of a forwarded flow shows at two devices. Without a counted
    rule in the namespace the kernel cannot tell rules apart, so the probe's
    packets its netfilter verdicts dropped are one verdict for the namespace's
    firewall, their counts (and directions) added up."""
    by_netns: dict[int, list] = {}
    for k, c in out.items():
        if (c.netns is not None and c.cause == "drop" and c.reason == _NETFILTER and c.probe_packets
                and name not in c.counts and not _is_hook_drop(c)):
            by_netns.setdefault(c.netns, []).append(k)
    for netns, keys in by_netns.items():
        if len(keys) < 2 or (netns, None, "drop") in out:
            continue
        parts = [out.pop(k) for k in keys]
        merged = out.at(netns, None, "drop", reason=_NETFILTER, queue="netfilter")
        for c in parts:
            merged.absorb(c)
        merged.probe_packets = sum(c.probe_packets for c in parts)
        merged.background = sum(c.background for c in parts)
        merged.directions = {d: sum(c.directions.get(d, 0) for c in parts) for d in {"forward", "reverse"}
                             if any(d in c.directions for c in parts)}
        for kind in {k for c in parts for k in c.counts}:
            merged.counts[kind] = sum(c.counts.get(kind, 0) for c in parts)
        devices = ", ".join(f"{c.probe_packets} at {c.device}" for c in parts)
        merged.evidence.append(Evidence(source="trace", count=merged.probe_packets, text=(
            f"one firewall, no rule counter to tell its rules apart: the probe's packets dropped by netfilter "
            f"verdicts in {ctx.name(netns)} add up ({devices})")))


def _is_hook_drop(c) -> bool:
    """Dropped by a hook function itself (nf_hook_slow), not by a rule's verdict
    (nft_do_chain): conntrack refusing the packet (see conntrack.py)."""
    return bool(c.locations) and c.locations <= {"nf_hook_slow"}
