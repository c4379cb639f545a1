"""Correlate a symptom with counters, traced drops and the path into ranked verdicts.

Pure: records in, records out. The rules, in the order they weigh:

* every loss the kernel reports is a *candidate*, keyed by (namespace, device):
  a traced drop (skb:kfree_skb, with its reason and location), a loss counter
  that moved (stats64 drops/errors, qdisc drops, a firewall DROP rule's
  packets, placed on the device the rule matches), a qdisc whose backlog grew
  while the device sent nothing (a TX stall), conntrack drops in a namespace,
  softnet drops on a CPU, an MTU on the path smaller than the endpoints';
* candidates at the same place merge, so one verdict carries every piece of
  evidence (traced FULL_RING drops and the rx_dropped counter of one macvtap);
* confidence grows with independent evidence (trace, counter, config), with
  being on the path, and with a count equal to the symptom's (tails,
  retransmitted segments, lost replies): "152 tails, 152 retransmits, 152 RX
  drops at macvtap0" is stated as an exact match;
* off-path candidates are verdicts only when something needs explaining and
  always rank below on-path ones; otherwise they are notes;
* drops the transport layer makes on purpose at an endpoint (the receiver
  discarding a duplicate segment, a socket purging its queue on close: reasons
  the kernel names TCP_*, SOCKET_*, QUEUE_PURGE, NO_SOCKET) are consequences of
  loss, not causes: they are reported as notes, never as verdicts.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from vnetdiag.model.counters import CounterSnapshot, InterfaceCounters, QdiscCounters
from vnetdiag.model.deltas import SnapshotDelta
from vnetdiag.model.diagnosis import Evidence, PathHop, Symptom, Verdict
from vnetdiag.model.namespaces import inode_label
from vnetdiag.model.netfilter import RuleCounter
from vnetdiag.model.tracing import TraceAnalysis

# stats64 counters that count lost packets (rx_errors and rx_dropped of one
# device often count the same packets, so a device's count is its largest one).
_LOSS_COUNTERS = ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors", "rx_missed_errors",
                  "rx_fifo_errors", "rx_over_errors", "tx_fifo_errors", "tx_aborted_errors")
_CONNTRACK_LOSS = ("drop", "insert_failed")

_W_TRACE, _W_COUNTER, _W_CONFIG = 0.45, 0.35, 0.35
_W_ON_PATH, _W_EXACT, _W_CLOSE = 0.15, 0.2, 0.1
_OFF_PATH_FACTOR = 0.4
_MIN_MATCH = 3
_MIN_OFF_PATH_CONFIDENCE = 0.2
_TIMING_SLACK_S = 0.005  # the drop that starts an RTO precedes the slow transaction's clock by little
_MAX_TIMELINE = 2000
_MIN_QUIET_COUNT = 5


@dataclass(kw_only=True)
class _Candidate:
    netns: int | None
    """Namespace inode: candidates of one place meet by identity, never by label."""
    device: str | None
    cause: str
    direction: str = ""
    queue: str | None = None
    reason: str | None = None
    trace_count: int = 0
    counter_count: int = 0
    config: bool = False
    ambiguous: tuple[int, ...] = ()
    """Namespaces (inodes) the traced device name could be in, when the trace could not tell."""
    rule: bool = False
    """Counted by a firewall rule (which knows its namespace and device exactly)."""
    locations: set[str] = field(default_factory=set)
    """Kernel functions where the traced drops here happened."""
    times_ns: list[int] = field(default_factory=list)
    """CLOCK_MONOTONIC times of the traced drops merged into this candidate."""
    inferred: bool = False
    """The namespace was chosen among several with a device of that name because
    only it is on the path: a guess, weighed as half a trace."""
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def count(self) -> int:
        return max(self.trace_count, self.counter_count)


_NAMES: dict[int, str] = {}
"""Labels of the namespaces of the snapshot being correlated, for evidence text."""


def _name(inode: int | None) -> str:
    if inode is None:
        return "an unknown namespace"
    return _NAMES.get(inode) or inode_label(inode)


def _root_qdisc(qdiscs: Sequence[QdiscCounters]) -> QdiscCounters | None:
    return next((q for q in qdiscs if q.parent == "root" and not q.is_class), None)


def _interface_candidates(delta: SnapshotDelta, before: CounterSnapshot, after: CounterSnapshot,
                          out: dict[tuple, _Candidate]) -> None:
    old = {i.interface.ref: i for i in before.interfaces}
    for ic in after.interfaces:
        key = (ic.interface.ref.netns_inode, ic.interface.name)
        prev = old.get(ic.interface.ref)
        if prev is not None:
            _stall(key, prev, ic, out)
    for d in delta.interfaces:
        if d.status not in ("present", "renamed"):
            continue
        key = (d.ref.netns_inode, d.name)
        moves = {m.name: m.delta for m in d.stats if m.name in _LOSS_COUNTERS and m.delta > 0}
        if moves:
            name, n = max(moves.items(), key=lambda kv: kv[1])
            c = out.setdefault(key + ("drop",), _Candidate(netns=key[0], device=key[1], cause="drop"))
            c.counter_count = max(c.counter_count, n)
            c.direction = c.direction or name.split("_", 1)[0]
            c.reason = c.reason or name
            listed = ", ".join(f"{k} +{v}" for k, v in sorted(moves.items()))
            c.evidence.append(Evidence(source="counter", text=f"{key[1]} in {_name(key[0])}: {listed}", count=n))
        over = [(q, m.delta) for q in d.qdiscs for m in q.moves
                if m.name == "overlimits" and m.delta > 0 and q.parent == "root"]
        if over:
            # A shaper holding packets back: delay without (necessarily) loss.
            q, n = max(over, key=lambda qn: qn[1])
            c = out.setdefault(key + ("queueing",), _Candidate(
                netns=key[0], device=key[1], cause="queueing", direction="tx", queue=f"{q.kind} {q.handle}",
                reason="qdisc overlimits"))
            c.counter_count = max(c.counter_count, n)
            c.evidence.append(Evidence(source="counter", count=n, text=(
                f"qdisc {q.kind} {q.handle} on {key[1]}: overlimits +{n} (packets held back), "
                f"backlog {q.backlog_packets} packets at the end")))
        qdrops = [(q, m.delta) for q in d.qdiscs for m in q.moves if m.name == "drops" and m.delta > 0]
        if qdrops:
            q, n = max(qdrops, key=lambda qn: qn[1])
            c = out.setdefault(key + ("drop",), _Candidate(netns=key[0], device=key[1], cause="drop"))
            c.counter_count = max(c.counter_count, n)
            c.direction, c.queue = "tx", f"{q.kind} {q.handle}"
            c.reason = c.reason or "qdisc drops"
            c.evidence.append(Evidence(source="counter", text=f"qdisc {q.kind} {q.handle} on {key[1]}: drops +{n}",
                                       count=n))


def _stall(key: tuple, prev: InterfaceCounters, now: InterfaceCounters, out: dict[tuple, _Candidate]) -> None:
    """More packets joined the backlog than left the device: the TX path is stuck.
    (A busy but working queue sends many times what its backlog grows by.)"""
    q0, q1 = _root_qdisc(prev.qdiscs), _root_qdisc(now.qdiscs)
    if q0 is None or q1 is None or q1.handle != q0.handle:
        return
    grown = q1.backlog_packets - q0.backlog_packets
    sent = now.stats.get("tx_packets", 0) - prev.stats.get("tx_packets", 0)
    if q1.backlog_packets == 0 or grown <= 0 or sent >= grown:
        return
    c = out.setdefault(key + ("tx-stall",), _Candidate(netns=key[0], device=key[1], cause="tx-stall",
                                                       direction="tx", queue=f"{q1.kind} {q1.handle}"))
    c.counter_count = q1.backlog_packets
    c.reason = "qdisc backlog grows, tx_packets frozen"
    c.evidence.append(Evidence(source="counter", count=q1.backlog_packets, text=(
        f"qdisc {q1.kind} {q1.handle} on {key[1]}: backlog {q0.backlog_packets} -> {q1.backlog_packets} packets "
        f"({q1.backlog_bytes} bytes) while tx_packets moved by {sent}")))


def _rule_candidates(rules: Sequence[tuple[RuleCounter, int]], out: dict[tuple, _Candidate]) -> None:
    for rule, n in rules:
        device = rule.in_device or rule.out_device
        key = (rule.netns_inode, device, "drop")
        c = out.setdefault(key, _Candidate(netns=rule.netns_inode, device=device, cause="drop"))
        c.counter_count += n
        c.rule = True
        c.direction = c.direction or ("rx" if rule.in_device else "tx" if rule.out_device else "")
        c.queue = c.queue or f"{rule.table} {rule.chain}"
        c.reason = c.reason or f"firewall rule {rule.target}"
        c.evidence.append(Evidence(source="counter", count=n, text=(
            f"iptables -t {rule.table} {rule.chain} in {rule.netns}: +{n} packets dropped by "
            f"'{_short(rule.rule)}'")))


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _netns_candidates(delta: SnapshotDelta, out: dict[tuple, _Candidate]) -> None:
    for n in delta.namespaces:
        moves = {m.name: m.delta for m in n.conntrack if m.delta > 0}
        lost = sum(moves.get(k, 0) for k in _CONNTRACK_LOSS)
        if not lost:
            continue
        label = _name(n.netns_inode)
        c = out.setdefault((n.netns_inode, None, "conntrack-full"),
                           _Candidate(netns=n.netns_inode, device=None, cause="conntrack-full",
                                      reason="conntrack drop"))
        c.counter_count = lost
        table = f"; table {n.conntrack_count}/{n.conntrack_limit} entries" if n.conntrack_limit else ""
        listed = ", ".join(f"{k} +{v}" for k, v in sorted(moves.items()))
        c.evidence.append(Evidence(source="counter", text=f"conntrack in {label}: {listed}{table}", count=lost))
    for s in delta.softnet:
        n = sum(m.delta for m in s.moves if m.name == "dropped")
        if n:
            c = out.setdefault((None, None, "softnet-drop"),
                               _Candidate(netns=None, device=None, cause="softnet-drop", reason="softnet dropped"))
            c.counter_count += n
            c.evidence.append(Evidence(source="counter", text=f"softnet_stat cpu{s.cpu}: dropped +{n}", count=n))


_TRANSPORT_PREFIXES = ("TCP_", "SOCKET_", "QUEUE_PURGE", "NO_SOCKET")


def _is_transport_consequence(reason: str) -> bool:
    return reason.startswith(_TRANSPORT_PREFIXES)


def _trace_candidates(trace: TraceAnalysis, path_keys: set[tuple[int, str]], out: dict[tuple, _Candidate],
                      notes: list[str], inodes: dict[str, int]) -> None:
    consequences: dict[str, int] = {}
    for d in trace.drops:
        if _is_transport_consequence(d.reason):
            consequences[d.reason] = consequences.get(d.reason, 0) + d.count
            continue
        # The tracer names namespaces by label; join on the inode behind it.
        netns = inodes.get(d.netns) if d.netns is not None else None
        ambiguous = tuple(inodes[a] for a in d.ambiguous if a in inodes)
        inferred = False
        if netns is None and ambiguous:
            on = [ns for ns in ambiguous if (ns, d.device) in path_keys]
            netns, inferred = (on[0], True) if len(on) == 1 else (None, False)
        # Merge into a counter candidate of the same place when there is one.
        key = next((k for k in out if k[0] == netns and k[1] == d.device and k[2] in ("drop", "tx-stall")),
                   (netns, d.device, "drop"))
        c = out.setdefault(key, _Candidate(netns=netns, device=d.device, cause="drop",
                                           ambiguous=ambiguous if netns is None else ()))
        c.trace_count += d.count
        c.locations.add(d.location)
        c.times_ns.extend(d.times_ns)
        if inferred:
            c.inferred = True
            c.evidence.append(Evidence(source="trace", text=(
                f"the name {d.device} exists in {len(ambiguous)} namespaces; {_name(netns)} is assumed because it is "
                f"the one on the path")))
        c.reason = d.reason if c.reason is None or c.reason.endswith(("dropped", "errors", "drops")) else c.reason
        where = f"{d.device} in {_name(netns)}" if d.device else f"namespace {_name(netns)}"
        c.evidence.append(Evidence(source="trace", count=d.count,
                                   text=f"{d.count} x skb:kfree_skb reason {d.reason} at {d.location} after {where}"))
    if consequences:
        listed = ", ".join(f"{n} {r}" for r, n in sorted(consequences.items(), key=lambda kv: -kv[1]))
        notes.append(f"transport-layer discards at the endpoints (consequences of loss, not causes): {listed}")


def _lower_devices(snap: CounterSnapshot) -> dict[tuple[int, str], str]:
    """(netns inode, device) -> its lower device in the same namespace (macvtap on
    its NIC, vlan on its parent): a packet dropped by the upper device was last
    *received* on the lower one, which is where the tracer places it."""
    names = {i.interface.ref: i.interface.name for i in snap.interfaces}
    out = {}
    for ic in snap.interfaces:
        x = ic.interface
        if x.link is not None and x.link.netns_inode == x.ref.netns_inode and x.kind != "veth":
            lower = names.get(x.link)
            if lower:
                out[(x.ref.netns_inode, x.name)] = lower
    return out


def _merge_stacked(out: dict[tuple, _Candidate], lower: dict[tuple[int, str], str]) -> None:
    """Traced drops on a lower device merge into the counter of the device above it."""
    for (ns, upper), low in lower.items():
        ck, tk = (ns, upper, "drop"), (ns, low, "drop")
        c, t = out.get(ck), out.get(tk)
        if c and t and c.counter_count and t.trace_count and not c.trace_count:
            c.trace_count, c.reason = t.trace_count, t.reason
            c.times_ns.extend(t.times_ns)
            c.evidence.extend(t.evidence)
            del out[tk]


def _merge_equal_counts(out: dict[tuple, _Candidate]) -> None:
    """A traced drop and a counter in the same namespace with the same count are the
    same packets seen twice: the trace names the last device that *received* the
    packet (a macvtap's lower device), the counter the device that *counted* the
    drop (the macvtap). Keep the counting device, with both pieces of evidence."""
    traced = [k for k, c in out.items() if c.trace_count and not c.counter_count and c.cause == "drop"]
    for tk in traced:
        t = out[tk]
        spaces = {t.netns} if t.netns else set(t.ambiguous)

        def same_place(c: _Candidate) -> bool:
            # A firewall drop is counted by its rule, in its namespace, whatever
            # device the trace's path join ended on (it loses packets across encaps).
            return c.netns in spaces or (c.rule and t.reason == "NETFILTER_DROP")

        # Equal, or within 10 % when the tracer lost events under load.
        match = [k for k, c in out.items() if not c.trace_count and c.counter_count and same_place(c)
                 and c.cause == "drop" and abs(c.counter_count - t.trace_count) <= 0.1 * c.counter_count]
        if not match and t.reason == "NETFILTER_DROP":
            # conntrack refusing a new entry drops in the netfilter hook: the same
            # packets as the namespace's conntrack drop counter.
            match = [k for k, c in out.items() if c.cause == "conntrack-full" and not c.trace_count
                     and c.netns in spaces and abs(c.counter_count - t.trace_count) <= 0.25 * c.counter_count]
        if len(match) == 1:
            c = out[match[0]]
            c.trace_count, c.reason = t.trace_count, t.reason
            c.times_ns.extend(t.times_ns)
            c.evidence.extend(t.evidence)
            del out[tk]


def _merge_hook_drops(out: dict[tuple, _Candidate]) -> None:
    """A netfilter drop decided by a hook function itself (nf_hook_slow), not by a
    rule (nft_do_chain, which a rule counter would also count), is conntrack
    refusing the packet: in a namespace whose table overflowed, those drops are
    the table's, whatever device the packet came through."""
    tables = {c.netns: c for c in out.values() if c.cause == "conntrack-full"}
    for key in [k for k, c in out.items() if c.cause == "drop" and c.netns in tables and c.trace_count
                and not c.counter_count and c.reason == "NETFILTER_DROP" and c.locations == {"nf_hook_slow"}]:
        t, table = out.pop(key), tables[key[0]]
        table.trace_count += t.trace_count
        table.times_ns.extend(t.times_ns)
        table.evidence.extend(t.evidence)


def _mtu_candidates(path: Sequence[PathHop], out: dict[tuple, _Candidate]) -> None:
    ends = [h.mtu for h in (path[:1] + path[-1:]) if h.mtu]
    if not ends:
        return
    need = max(ends)
    for i, hop in enumerate(path):
        # A bridge takes the smallest MTU of its ports: the port is the cause, not the bridge.
        inherited = hop.kind == "bridge" and any(
            h.netns_inode == hop.netns_inode and h.kind != "bridge" and h.mtu == hop.mtu for h in path)
        if hop.mtu and hop.mtu < need and not inherited:
            c = out.setdefault((hop.netns_inode, hop.device, "mtu-mismatch"), _Candidate(
                netns=hop.netns_inode, device=hop.device, cause="mtu-mismatch", direction="tx", config=True,
                reason=f"mtu {hop.mtu} < {need}"))
            c.evidence.append(Evidence(source="config", text=(
                f"{hop.device} in {hop.netns} has MTU {hop.mtu}, the endpoints {need}: frames over "
                f"{hop.mtu} bytes cannot cross it")))
            # Drops traced just before this hop in the same namespace are its victims.
            before = {(h.netns_inode, h.device) for h in path[:i] if h.netns_inode == hop.netns_inode}
            for key in [k for k in out if (k[0], k[1]) in before and k[2] == "drop"]:
                victim = out.pop(key)
                c.trace_count += victim.trace_count
                c.times_ns.extend(victim.times_ns)
                c.evidence.extend(victim.evidence)


def _drops_during(times_s: Sequence[float], tails: Sequence[tuple[float, float]]) -> int:
    """How many tail intervals (start_s, end_s) contain at least one drop time."""
    hit = 0
    for start, end in tails:
        i = bisect.bisect_left(times_s, start - _TIMING_SLACK_S)
        if i < len(times_s) and times_s[i] <= end:
            hit += 1
    return hit


def _score(c: _Candidate, on_path: bool, symptom: Symptom, tails: Sequence[tuple[float, float]] = (),
           times_s: Sequence[float] = ()) -> tuple[float, bool, list[Evidence]]:
    extra: list[Evidence] = []
    trace_w = _W_TRACE / 2 if c.inferred and not c.counter_count else _W_TRACE
    score = (trace_w if c.trace_count else 0) + (_W_COUNTER if c.counter_count else 0) + (_W_CONFIG if c.config else 0)
    if c.cause == "tx-stall":
        score += _W_CONFIG  # a frozen queue is observed state, not an inference from counts
    if c.cause == "queueing":
        # Delay, not loss: it explains a high median, never the retransmission tails.
        score = _W_COUNTER * 0.5
        extra.append(Evidence(source="probe", text=f"probe p50 {symptom.p50_us:.0f} us, p99 {symptom.p99_us:.0f} us"))
        return (score + (_W_ON_PATH if on_path else 0)) * (1 if on_path else _OFF_PATH_FACTOR), False, extra
    exact = False
    targets = {"tails": symptom.tails, "retransmitted segments": symptom.retrans_segs,
               "SYN retransmits": symptom.syn_retrans, "lost replies": symptom.udp_lost}
    # Equal counts are evidence only when they could not be a coincidence of small numbers.
    matches = [name for name, n in targets.items() if n >= _MIN_MATCH and n == c.count]
    if matches:
        exact = True
        score += _W_EXACT
        said = ", ".join(f"{c.count} {name}" for name in matches)
        extra.append(Evidence(source="probe", count=c.count, text=f"exact match: {said}, {c.count} drops here"))
    elif symptom.tails and symptom.retrans_segs and symptom.tails <= c.count <= symptom.retrans_segs:
        # Each lost data segment is retransmitted at least once and delays at most
        # one transaction; lost pure ACKs cause (spurious) retransmits but no tail.
        score += _W_CLOSE
        extra.append(Evidence(source="probe", count=c.count, text=(
            f"consistent with the symptom: {symptom.tails} tails <= {c.count} drops here <= "
            f"{symptom.retrans_segs} retransmitted segments")))
    elif symptom.losses and c.count and abs(c.count - symptom.losses) <= 0.25 * symptom.losses:
        score += _W_CLOSE
        extra.append(Evidence(source="probe", count=symptom.losses,
                              text=f"close to the symptom: {symptom.losses} losses seen by the probe, {c.count} here"))
    if tails and times_s:
        hit = _drops_during(times_s, tails)
        extra.append(Evidence(source="trace", count=hit, text=(
            f"timing: {hit} of {len(tails)} slow transactions had a drop here while they waited")))
        if hit * 2 >= len(tails):
            score += _W_CLOSE
    if c.trace_count and c.counter_count:
        agree = "equal" if c.trace_count == c.counter_count else "differ"
        extra.append(Evidence(source="counter", text=f"traced drops ({c.trace_count}) and counter ({c.counter_count}) {agree}"))
    if symptom.losses and c.count:
        # How much of the symptom this place accounts for: one drop does not
        # explain five hundred retransmissions, whatever its evidence.
        score *= 0.5 + 0.5 * min(1.0, c.count / symptom.losses)
    if on_path:
        score += _W_ON_PATH
    else:
        score *= _OFF_PATH_FACTOR
    return min(score, 0.99), exact, extra


_CONFIRM = {
    "drop": "clear the suspected cause and rerun: the tails and this counter must both stop; "
            "or watch it live with vnetdiag drops --device {device}",
    "tx-stall": "tc -s qdisc show dev {device}: the backlog keeps growing and Sent stays put; "
                "replacing the qdisc (or a link bounce) should release it",
    "conntrack-full": "conntrack -S in {netns}: drop/insert_failed grow with each new connection; "
                      "raising nf_conntrack_max (or shortening timeouts) must stop them",
    "mtu-mismatch": "ping -M do -s {size} across the path fails while smaller sizes pass; "
                    "raising {device}'s MTU must fix it",
    "queueing": "tc -s qdisc show dev {device}: overlimits grow and the backlog stands while latency is high; "
                "a larger rate (or removing the shaper) must bring the p50 down",
    "softnet-drop": "grow net.core.netdev_max_backlog; /proc/net/softnet_stat's dropped column must stop",
}


def correlate(*, symptom: Symptom, path: Sequence[PathHop], delta: SnapshotDelta, before: CounterSnapshot,
              after: CounterSnapshot, trace: TraceAnalysis | None,
              rules: Sequence[tuple[RuleCounter, int]] = (), tails: Sequence[tuple[float, float]] = (),
              window_start_ns: int | None = None) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """Ranked verdicts, and notes on losses off the path that need no explaining.

    ``tails``: (start_s, end_s) of the slow transactions, in seconds from
    ``window_start_ns`` (CLOCK_MONOTONIC), the clock of the traced drops."""
    path_keys = {(h.netns_inode, h.device) for h in path}
    path_netns = {h.netns_inode for h in path}
    found: dict[tuple, _Candidate] = {}
    notes: list[str] = []
    _NAMES.clear()
    _NAMES.update({n.inode: n.label for n in (*before.namespaces, *after.namespaces)})
    _NAMES.update({h.netns_inode: h.netns for h in path})
    _interface_candidates(delta, before, after, found)
    _netns_candidates(delta, found)
    _rule_candidates(rules, found)
    if trace is not None:
        _trace_candidates(trace, path_keys, found, notes, {lbl: ino for ino, lbl in _NAMES.items()})
        _merge_stacked(found, _lower_devices(after))
        _merge_equal_counts(found)
        _merge_hook_drops(found)
    _mtu_candidates(path, found)

    scored = []
    weak: list[_Candidate] = []
    for c in found.values():
        if not c.count and not c.config:
            continue
        if c.netns is None and c.cause != "softnet-drop":
            # A device name found in several namespaces, none on the path: it
            # cannot be placed, so it cannot be a verdict.
            weak.append(c)
            continue
        if c.cause == "softnet-drop":
            on_path = True  # a CPU's backlog serves every path through this host
        elif c.device is None:
            on_path = c.netns in path_netns
        else:
            on_path = (c.netns, c.device) in path_keys
        quiet = not symptom.losses and not symptom.errors
        if quiet and (not on_path or (c.count < _MIN_QUIET_COUNT + symptom.transactions // 1000 and not c.config
                                      and c.cause != "tx-stall")):
            # Nothing to explain: a few stray drops (packets of flows that
            # ended before the window, say) are worth a note, not a verdict.
            where = "on" if on_path else "off"
            notes.append(f"{where} the path, with no symptom to explain: {c.count} x {c.reason} at "
                         f"{c.device or 'namespace'} in {_name(c.netns)}")
            continue
        times_s = sorted((t - window_start_ns) / 1e9 for t in c.times_ns) if window_start_ns is not None else []
        confidence, exact, extra = _score(c, on_path, symptom, tails, times_s)
        if not on_path and confidence < _MIN_OFF_PATH_CONFIDENCE:
            weak.append(c)
            continue
        size = max((h.mtu or 0) for h in path) if path else 1500
        confirm = _CONFIRM[c.cause].format(device=c.device or "(each device)", netns=_name(c.netns),
                                           size=max(size - 28, 0))
        scored.append((on_path, confidence, c.count, c, exact, extra, confirm, times_s))
    if weak:
        weak.sort(key=lambda c: -c.count)
        shown = ", ".join(f"{c.count} x {c.reason} at {c.device or 'namespace'} in {_name(c.netns)}"
                          for c in weak[:3])
        notes.append(f"{len(weak)} more places dropped packets off the path, too weakly tied to the symptom "
                     f"to be verdicts (largest: {shown})")
    scored.sort(key=lambda s: (s[0], s[1], s[2]), reverse=True)
    verdicts = tuple(
        Verdict(rank=i + 1, netns=_NAMES.get(c.netns) if c.netns is not None else None, netns_inode=c.netns,
                device=c.device, direction=c.direction or "", queue=c.queue,
                cause=c.cause, reason=c.reason, count=c.count, confidence=round(conf, 2), on_path=on_path,
                exact_match=exact, evidence=tuple(c.evidence + extra), confirm=confirm,
                drop_times_s=tuple(round(t, 6) for t in times_s[:_MAX_TIMELINE]))
        for i, (on_path, conf, _n, c, exact, extra, confirm, times_s) in enumerate(scored))
    return verdicts, tuple(notes)


def symptom_of(result, *, pattern: str, streams: int, tcp_moves: dict[str, int] | None = None) -> Symptom:
    """Reduce a ProbeResult (None: the probe could not run) to the numbers verdicts
    are compared with. ``tcp_moves``: RetransSegs/TCPSynRetrans deltas of the two
    endpoints' namespaces from the counters, used when the probe has none."""
    moves = tcp_moves or {}
    if result is None:
        return Symptom(pattern=pattern, transactions=0, p50_us=0.0, p99_us=0.0, max_us=0.0, tails=0,
                       retrans_segs=moves.get("RetransSegs", 0), syn_retrans=moves.get("TCPSynRetrans", 0),
                       errors=streams)
    tails = {t.signature: t.count for t in result.tails if t.count}
    retrans_tails = sum(t.count for t in result.tails if t.expected_retransmits >= 1)
    tcp = result.tcp
    retrans = syn = 0
    if tcp is not None:
        retrans = tcp.retrans_segs_delta + max(tcp.server_retrans_segs_delta or 0, 0)
        syn = tcp.syn_retrans_delta + max(tcp.server_syn_retrans_delta or 0, 0)
    else:
        retrans, syn = moves.get("RetransSegs", 0), moves.get("TCPSynRetrans", 0)
    lat = result.latency
    return Symptom(pattern=result.pattern, transactions=result.transactions, p50_us=lat.get("p50"),
                   p99_us=lat.get("p99"), max_us=lat.max_us, tails=retrans_tails, tails_by_signature=tails,
                   retrans_segs=retrans, syn_retrans=syn, udp_lost=result.udp.lost if result.udp else 0,
                   errors=result.errors)
