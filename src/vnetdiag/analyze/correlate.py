"""Correlate one diagnose bundle into ranked verdicts: run the evidence kinds,
then score what they found. Pure: a bundle in, verdicts and notes out.

Confidence (docs/diagnose.md has the table and the reasons):

* 0.90-0.99: the probe's own lost packets were traced dying here (eBPF flow
  records), at least half of what the probe lost;
* 0.60-0.89: kernel counters or traced drops here agree with the symptom's
  count (equal, or within 25 %), on the path;
* 0.30-0.59: loss here on the path, but its count does not match the symptom,
  or only the timing ties it to the tails, or its namespace was inferred;
* below 0.30: drops known to be other traffic's (background), or off the path.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from vnetdiag.analyze.evidence import BY_NAME, KINDS
from vnetdiag.analyze.evidence.base import STALLS, Candidate, Candidates, Context, is_generic
from vnetdiag.model.bundle import Bundle
from vnetdiag.model.diagnosis import Evidence, Symptom, Verdict

PROBE_FLOOR, COUNTED_FLOOR, PLACED_CAP, BACKGROUND_CAP = 0.9, 0.6, 0.59, 0.29
_W_ON_PATH, _W_EXACT, _W_CLOSE, _W_TIMING = 0.15, 0.2, 0.1, 0.1
_GENERIC_PENALTY = 0.05
_OFF_PATH_FACTOR = 0.4
_MIN_MATCH = 3
_MIN_OFF_PATH_CONFIDENCE = 0.2
_TIMING_SLACK_S = 0.005  # the drop that starts an RTO precedes the slow transaction's clock by little
_MAX_TIMELINE = 2000
_MIN_QUIET_COUNT = 5


def correlate(bundle: Bundle) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """Ranked verdicts, and notes (losses that need no explaining, what was set aside)."""
    ctx = Context.of(bundle)
    found = Candidates()
    for kind in KINDS:
        kind.candidates(ctx, found)
    for kind in KINDS:
        kind.merge(ctx, found)
    return _rank(ctx, found)


def _on_path(ctx: Context, c: Candidate) -> bool:
    if c.cause == "softnet-drop":
        return True  # a CPU's backlog serves every path through this host
    if c.probe_packets:
        return True  # the probe's own packets died here: a way they took (one leg of a multipath route)
    if c.device is None:
        return c.netns in ctx.path_netns
    return (c.netns, c.device) in ctx.path_keys


def _rank(ctx: Context, found: Candidates) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    b = ctx.bundle
    symptom = b.symptom
    scored, weak = [], []
    for c in found.values():
        if not c.count and not c.config:
            continue
        if c.netns is None and c.cause != "softnet-drop":
            weak.append(c)  # a device name in several namespaces, none on the path: cannot be placed
            continue
        on_path = _on_path(ctx, c)
        quiet = not symptom.losses and not symptom.errors
        if quiet and (not on_path or (c.count < _MIN_QUIET_COUNT + symptom.transactions // 1000 and not c.config
                                      and c.cause not in STALLS)):
            ctx.notes.append(f"{'on' if on_path else 'off'} the path, with no symptom to explain: "
                             f"{c.count} x {c.reason} at {ctx.where(c)}")
            continue
        times_s = (sorted((t - b.window_start_ns) / 1e9 for t in c.times_ns)
                   if b.window_start_ns is not None else [])
        confidence, exact, extra = score(c, on_path, symptom, ctx, b.tails, times_s)
        if not on_path and confidence < _MIN_OFF_PATH_CONFIDENCE:
            weak.append(c)
            continue
        scored.append((on_path, c.probe_packets > 0, confidence, c.count, c, exact, extra, times_s))
    if weak:
        weak.sort(key=lambda c: -c.count)
        shown = ", ".join(f"{c.count} x {c.reason} at {ctx.where(c)}" for c in weak[:3])
        ctx.notes.append(f"{len(weak)} more places dropped packets off the path, too weakly tied to the symptom "
                         f"to be verdicts (largest: {shown})")
    if ctx.flows_known and any(s[1] for s in scored):
        # Where the probe's own packets were traced dying, places that dropped only
        # other traffic's packets are context, not causes: notes.
        context = [s for s in scored if not s[1] and s[4].background and s[4].count <= s[4].background]
        for s in context:
            c = s[4]
            ctx.notes.append(f"on the path, other traffic's drops (none of the probe's): {c.background} x "
                             f"{c.reason} at {ctx.where(c)}")
        scored = [s for s in scored if s not in context]
    scored.sort(key=lambda s: s[:4], reverse=True)
    size = max((h.mtu or 0) for h in b.path) if b.path else 1500
    verdicts = tuple(
        Verdict(rank=i + 1, netns=ctx.labels.get(c.netns) if c.netns is not None else None, netns_inode=c.netns,
                device=c.device, direction=c.direction or "", queue=c.queue, cause=c.cause, reason=c.reason,
                count=c.probe_packets or c.count, confidence=round(conf, 2), on_path=on_path, exact_match=exact,
                evidence=tuple(c.evidence + extra), confirm=_confirm(ctx, c, size),
                probe_packets=c.probe_packets if ctx.flows_known else None,
                background=c.background, drop_times_s=tuple(round(t, 6) for t in times_s[:_MAX_TIMELINE]))
        for i, (on_path, _p, conf, _n, c, exact, extra, times_s) in enumerate(scored))
    return verdicts, tuple(ctx.notes)


def _confirm(ctx: Context, c: Candidate, size: int) -> str:
    by_cause = {"tx-stall": "tx-stall", "guest-tx-stall": "guest-tx", "conntrack-full": "conntrack", "mtu-mismatch": "mtu",
                "softnet-drop": "softnet", "rp-filter": "protocol", "no-route": "protocol",
                "fragmentation": "protocol"}
    kind = ("route" if c.cause == "no-route" and "route" in c.counts else by_cause.get(c.cause)
            or ("packets" if c.probe_packets else "rule" if "rule" in c.counts else "counter"))
    if c.cause == "queueing":
        return (f"tc -s qdisc show dev {c.device}: overlimits grow and the backlog stands while latency is high; "
                "a larger rate (or removing the shaper) must bring the p50 down")
    p = ctx.bundle.probe
    return BY_NAME[kind].confirm.format(device=c.device or "(each device)", netns=ctx.name(c.netns),
                                        size=max(size - 28, 0), client=p.client if p else "A",
                                        server=p.server if p else "B", port=p.server_port if p else "PORT")


def _drops_during(times_s: Sequence[float], tails: Sequence[tuple[float, float]]) -> int:
    """How many tail intervals (start_s, end_s) contain at least one drop time."""
    hit = 0
    for start, end in tails:
        i = bisect.bisect_left(times_s, start - _TIMING_SLACK_S)
        if i < len(times_s) and times_s[i] <= end:
            hit += 1
    return hit


def score(c: Candidate, on_path: bool, symptom: Symptom, ctx: Context, tails: Sequence[tuple[float, float]] = (),
          times_s: Sequence[float] = ()) -> tuple[float, bool, list[Evidence]]:
    """(confidence, exact match, evidence the scoring itself adds)."""
    extra: list[Evidence] = []
    if c.cause == "queueing":
        # Delay, not loss: it explains a high median, never the retransmission tails.
        extra.append(Evidence(source="probe", text=f"probe p50 {symptom.p50_us:.0f} us, p99 {symptom.p99_us:.0f} us"))
        conf = BY_NAME["counter"].weight * 0.5 + (_W_ON_PATH if on_path else 0)
        return conf * (1 if on_path else _OFF_PATH_FACTOR), False, extra
    losses = symptom.losses
    count = c.probe_packets or c.count
    targets = {"tails": symptom.tails, "retransmitted segments": symptom.retrans_segs,
               "SYN retransmits": symptom.syn_retrans, "lost replies": symptom.udp_lost}
    # Equal counts are evidence only when they could not be a coincidence of small numbers.
    matches = [n for n, v in targets.items() if v >= _MIN_MATCH and v == count]
    exact = bool(matches)
    close = not exact and losses and count and abs(count - losses) <= 0.25 * losses
    if exact:
        said = " and ".join(f"{targets[m]} {m}" for m in matches)
        what = f"{count} of the probe's lost packets" if c.probe_packets else f"{count} drops"
        extra.append(Evidence(source="probe", count=count, text=f"exact match: {what} here, {said}"))
    elif close:
        extra.append(Evidence(source="probe", count=losses,
                              text=f"close to the symptom: {losses} losses seen by the probe, {count} here"))
    elif symptom.tails and symptom.retrans_segs and symptom.tails <= count <= symptom.retrans_segs:
        # Each lost data segment is retransmitted at least once and delays at most
        # one transaction; lost pure ACKs cause (spurious) retransmits but no tail.
        close = True
        extra.append(Evidence(source="probe", count=count, text=(
            f"consistent with the symptom: {symptom.tails} tails <= {count} drops here <= "
            f"{symptom.retrans_segs} retransmitted segments")))
    timed = False
    if tails and times_s:
        hit = _drops_during(times_s, tails)
        extra.append(Evidence(source="trace", count=hit, text=(
            f"timing: {hit} of {len(tails)} slow transactions had a drop here while they waited")))
        timed = hit * 2 >= len(tails)
    if c.counts.get("trace") and c.counts.get("counter"):
        t, n = c.counts["trace"], c.counts["counter"]
        extra.append(Evidence(source="counter", text=f"traced drops ({t}) and counter ({n}) "
                                                     f"{'equal' if t == n else 'differ'}"))
    if c.probe_packets:
        share = c.probe_packets / max(losses, c.probe_packets) if losses else 1.0
        conf = PROBE_FLOOR + 0.09 * share if share >= 0.5 else COUNTED_FLOOR + 0.6 * share
        if c.background:
            extra.append(Evidence(source="trace", count=c.background,
                                  text=f"{c.background} other packets (not the probe's) were dropped here too"))
    else:
        weights = {k: BY_NAME[k].weight for k in c.kinds if k in BY_NAME}
        if c.inferred and "counter" not in weights:
            weights["trace"] = weights.get("trace", 0) / 2
        conf = min(sum(weights.values()), 0.6)
        conf += _W_EXACT if exact else _W_CLOSE if close else 0
        conf += _W_TIMING if timed else 0
        if losses and count:
            # How much of the symptom this place accounts for: one drop does not
            # explain five hundred retransmissions, whatever its evidence.
            conf *= 0.5 + 0.5 * min(1.0, count / losses)
        conf += _W_ON_PATH if on_path else 0
        # Never "the probe's packets died here" without having seen them.
        conf = min(conf, PROBE_FLOOR - 0.01)
        if not (exact or close) and c.cause not in STALLS and not (c.config and not losses):
            conf = min(conf, PLACED_CAP)
        if ctx.flows_known and c.background and c.count <= c.background:
            extra.append(Evidence(source="trace", count=c.background,
                                  text=f"none of the {c.background} packets dropped here was the probe's"))
            conf = min(conf, BACKGROUND_CAP)
    if is_generic(c.reason) and c.cause == "drop":
        conf -= _GENERIC_PENALTY  # a specific kernel reason outweighs NOT_SPECIFIED
    if not on_path:
        conf *= _OFF_PATH_FACTOR
    return max(0.0, min(conf, 0.99)), exact, extra
