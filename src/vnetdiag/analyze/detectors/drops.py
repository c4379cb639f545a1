"""Drop anomalies: drop-like counters rising above their learned baseline.

Series (each its own baseline, see baseline.py):
  * per device: ``interface_counters`` (rx_dropped, tx_dropped, rx_missed_errors);
  * per device: drops of its root qdisc (kind "qdisc_drops", evidence names the qdisc);
  * per CPU (host-wide): softnet dropped and time_squeeze (``softnet``);
  * per namespace: ``snmp_counters`` (Tcp RetransSegs, TcpExt ListenOverflows, ListenDrops);
  * per device and kernel drop reason (kind "kfree_skb REASON"), when the
    watch runs the drop tracer (``tracer = true``): faults that move no
    counter (an iptables DROP) are seen this way.

A cycle is anomalous for a series when its delta is at least ``min_count``
and its rate exceeds the baseline threshold. No verdicts during the first
``warmup_cycles`` cycles (the baselines learn). Raised after ``raise_after``
anomalous cycles in a row, cleared after ``clear_after`` normal ones: one
burst does not flap. Counters of a device or namespace that appeared after
the start are judged against a zero baseline from their first delta.
"""

from __future__ import annotations

from vnetdiag.analyze.deltas import counter_delta
from vnetdiag.analyze.detectors.base import Detector, Param, device_subject
from vnetdiag.analyze.detectors.baseline import Baseline
from vnetdiag.analyze.detectors.moves import (
    by_ref,
    interval_s,
    move,
    qdisc_move,
    qdisc_pairs,
)
from vnetdiag.model.namespaces import inode_label
from vnetdiag.model.watch import Alert, Observation, Transition


class DropAnomaly(Detector):
    name = "drop_anomaly"
    summary = "drop counters above their learned baseline (EWMA + MAD on rates, with hysteresis)"
    PARAMS = {
        "raise_after": Param(default=2, doc="anomalous cycles in a row before raising"),
        "clear_after": Param(default=3, doc="normal cycles in a row before clearing"),
        "warmup_cycles": Param(default=3, doc="cycles that only learn"),
        "alpha": Param(default=0.05, doc="EWMA weight of a new sample (memory about 1/alpha cycles)"),
        "k": Param(default=4.0, doc="threshold in robust standard deviations above the mean"),
        "rel_floor": Param(default=0.5, doc="minimum scale as a fraction of the mean rate"),
        "abs_floor_per_s": Param(default=0.5, doc="minimum scale in events per second"),
        "min_count": Param(default=5, doc="minimum delta in one interval to count as anomalous"),
        "interface_counters": Param(default=["rx_dropped", "tx_dropped", "rx_missed_errors"],
                                    doc="stats64 counters watched per device"),
        "qdisc": Param(default=True, doc="watch qdisc drops"),
        "softnet": Param(default=True, doc="watch softnet dropped/time_squeeze per CPU (host-wide)"),
        "drop_reasons": Param(default=True, doc="kernel drop reasons per device (when the tracer runs)"),
        "snmp_counters": Param(default=["Tcp.RetransSegs", "TcpExt.ListenOverflows", "TcpExt.ListenDrops"],
                               doc="Section.Counter names watched per namespace"),
    }

    def __init__(self, params: dict | None = None) -> None:
        super().__init__(params)
        self.baselines: dict[tuple[str, str], Baseline] = {}
        self.cycles = 0
        self._snmp = {tuple(s.split(".", 1)) for s in self.p["snmp_counters"] if "." in s}

    def step(self, obs: Observation) -> list[Transition]:
        now = obs.current.taken_unix_s
        present: set[str] = set()
        for i in obs.current.interfaces:
            present.add(device_subject(i.interface.netns_name, i.interface.name))
        names = {n.inode: n.label for n in obs.current.namespaces}
        present.update(names.values())
        present.update(f"cpu {c.cpu}" for c in obs.current.softnet)
        hits: list[Alert] = []
        prev = obs.previous
        dt = interval_s(prev, obs.current) if prev is not None else 0.0
        if prev is None or dt <= 0:
            return self.book.update([], present, now)
        self.cycles += 1
        judge = self.cycles > self.p["warmup_cycles"]
        seen: set[tuple[str, str]] = set()

        def sample(subject: str, kind: str, delta: int, **fields) -> None:
            rate = delta / dt
            key = (subject, kind)
            seen.add(key)
            b = self.baselines.get(key)
            if b is None:
                b = self.baselines[key] = Baseline()
            thr = b.observe(rate, alpha=self.p["alpha"], k=self.p["k"], rel_floor=self.p["rel_floor"],
                            abs_floor=self.p["abs_floor_per_s"], learning=not judge)
            if judge and delta >= self.p["min_count"] and rate > thr:
                evidence = {"delta": delta, "rate_per_s": round(rate, 3), "baseline_per_s": round(b.mean, 3),
                            "threshold_per_s": round(thr, 3), "interval_s": round(dt, 3),
                            **fields.pop("evidence", {})}
                hits.append(Alert(detector=self.name, subject=subject, kind=kind, severity="warning",
                                  summary=f"{kind} on {subject}: {rate:.1f}/s ({delta} in {dt:.1f} s), "
                                          f"baseline {b.mean:.2f}/s, threshold {thr:.2f}/s",
                                  evidence=evidence, **fields))

        wanted = self.p["interface_counters"]
        before = by_ref(prev)
        for ic in obs.current.interfaces:
            old = before.get(ic.interface.ref)
            if old is None:
                continue
            i = ic.interface
            ns = i.netns_name
            subject = device_subject(ns, i.name)
            dev = dict(netns=ns, netns_inode=i.ref.netns_inode, device=i.name, ifindex=i.ref.ifindex)
            for name in wanted:
                m = move(old.stats, ic.stats, name)
                if m:
                    sample(subject, name, m, **dev)
            if self.p["qdisc"]:
                # Root qdiscs only: a root counts its children's drops too (tbf, htb, mq).
                for a, q in qdisc_pairs(old, ic, roots_only=True):
                    m = qdisc_move(a, q, "drops")
                    if m:
                        sample(subject, "qdisc_drops", m,
                               evidence={"qdisc": f"{q.kind} {q.handle} parent {q.parent}",
                                         "backlog_packets": q.backlog_packets}, **dev)
        prev_ns = {s.netns_inode: s for s in prev.netns_stats}
        for s in obs.current.netns_stats:
            old_ns = prev_ns.get(s.netns_inode)
            if old_ns is None:
                continue
            label = names.get(s.netns_inode) or inode_label(s.netns_inode)
            for section, name in self._snmp:
                m = move(old_ns.snmp.get(section, {}), s.snmp.get(section, {}), name)
                if m:
                    sample(label, f"{section}.{name}", m, netns=label, netns_inode=s.netns_inode)
        # Kernel drop reasons (only when the tracer runs): a series per device and reason.
        if self.p["drop_reasons"]:
            here = {(i.interface.ref.netns_inode, i.interface.ref.ifindex): i.interface
                    for i in obs.current.interfaces}
            for r in obs.drop_reasons:
                i = here.get((r.netns_inode, r.ifindex))
                if i is None:
                    continue  # gone since the snapshot: no device to baseline
                subject = device_subject(i.netns_name, i.name)
                present.add(subject)
                sample(subject, f"kfree_skb {r.reason}", r.count, evidence={"source": "skb:kfree_skb"},
                       netns=i.netns_name, device=i.name, netns_inode=r.netns_inode, ifindex=r.ifindex)
        if self.p["softnet"]:
            prev_cpu = {c.cpu: c for c in prev.softnet}
            for c in obs.current.softnet:
                old_c = prev_cpu.get(c.cpu)
                if old_c is None:
                    continue
                for name in ("dropped", "time_squeeze"):
                    m = counter_delta(getattr(old_c, name), getattr(c, name), 32)[0]
                    if m:
                        sample(f"cpu {c.cpu}", f"softnet {name}", m)
        # Series that did not move this cycle learn a zero; negligible ones are
        # forgotten (a zero baseline is the default), so state stays bounded.
        for key, b in list(self.baselines.items()):
            if key in seen:
                continue
            if key[0] not in present:
                del self.baselines[key]
                continue
            b.observe(0.0, alpha=self.p["alpha"], k=self.p["k"], rel_floor=self.p["rel_floor"],
                      abs_floor=self.p["abs_floor_per_s"], learning=not judge)
            if b.negligible():
                del self.baselines[key]
        return self.book.update(hits, present, now)
