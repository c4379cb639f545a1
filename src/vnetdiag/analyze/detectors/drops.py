"""Drop anomalies: drop-like counters rising above their learned baseline.

Series (each its own baseline, see baseline.py):
  * per device: ``interface_counters`` (rx_dropped, tx_dropped, rx_missed_errors);
  * per device: drops of its root qdisc (kind "qdisc_drops", evidence names the qdisc);
  * per CPU (host-wide): softnet dropped and time_squeeze (``softnet``);
  * per namespace: ``snmp_counters`` (Tcp RetransSegs, TcpExt ListenOverflows, ListenDrops).

A cycle is anomalous for a series when its delta is at least ``min_count``
and its rate exceeds the baseline threshold. No verdicts during the first
``warmup_cycles`` cycles (the baselines learn). Raised after ``raise_after``
anomalous cycles in a row, cleared after ``clear_after`` normal ones: one
burst does not flap. Counters of a device or namespace that appeared after
the start are judged against a zero baseline from their first delta.
"""

from __future__ import annotations

from vnetdiag.analyze.detectors.base import Detector, Param, device_subject
from vnetdiag.analyze.detectors.baseline import Baseline
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
            present.add(device_subject(i.interface.netns_name or str(i.interface.ref.netns_inode), i.interface.name))
        names = {n.inode: n.label for n in obs.current.namespaces}
        present.update(names.values())
        present.update(f"cpu {c.cpu}" for c in obs.current.softnet)
        hits: list[Alert] = []
        d = obs.delta
        if d is None or d.interval_s <= 0:
            return self.book.update([], present, now)
        self.cycles += 1
        judge = self.cycles > self.p["warmup_cycles"]
        seen: set[tuple[str, str]] = set()

        def sample(subject: str, kind: str, delta: int, rate: float, **fields) -> None:
            key = (subject, kind)
            seen.add(key)
            b = self.baselines.get(key)
            if b is None:
                b = self.baselines[key] = Baseline()
            thr = b.observe(rate, alpha=self.p["alpha"], k=self.p["k"], rel_floor=self.p["rel_floor"],
                            abs_floor=self.p["abs_floor_per_s"])
            if judge and delta >= self.p["min_count"] and rate > thr:
                evidence = {"delta": delta, "rate_per_s": round(rate, 3), "baseline_per_s": round(b.mean, 3),
                            "threshold_per_s": round(thr, 3), "interval_s": round(d.interval_s, 3),
                            **fields.pop("evidence", {})}
                hits.append(Alert(detector=self.name, subject=subject, kind=kind, severity="warning",
                                  summary=f"{kind} on {subject}: {rate:.1f}/s ({delta} in {d.interval_s:.1f} s), "
                                          f"baseline {b.mean:.2f}/s, threshold {thr:.2f}/s",
                                  evidence=evidence, **fields))

        wanted = set(self.p["interface_counters"])
        for i in d.interfaces:
            if i.status not in ("present", "renamed"):
                continue
            ns = i.netns_name or str(i.ref.netns_inode)
            subject = device_subject(ns, i.name)
            dev = dict(netns=ns, netns_inode=i.ref.netns_inode, device=i.name, ifindex=i.ref.ifindex)
            for m in i.stats:
                if m.name in wanted and m.delta:
                    sample(subject, m.name, m.delta, m.rate_per_s, **dev)
            if self.p["qdisc"]:
                # Root qdiscs only: a root counts its children's drops too (tbf, htb, mq).
                for q in i.qdiscs:
                    if q.parent != "root" or q.is_class:
                        continue
                    for m in q.moves:
                        if m.name == "drops" and m.delta:
                            sample(subject, "qdisc_drops", m.delta, m.rate_per_s,
                                   evidence={"qdisc": f"{q.kind} {q.handle} parent {q.parent}",
                                             "backlog_packets": q.backlog_packets}, **dev)
        for n in d.namespaces:
            label = n.netns_name or names.get(n.netns_inode) or f"netns:{n.netns_inode}"
            for section, m in n.snmp:
                if (section, m.name) in self._snmp and m.delta:
                    sample(label, f"{section}.{m.name}", m.delta, m.rate_per_s, netns=label,
                           netns_inode=n.netns_inode)
        if self.p["softnet"]:
            for s in d.softnet:
                for m in s.moves:
                    if m.name in ("dropped", "time_squeeze") and m.delta:
                        sample(f"cpu {s.cpu}", f"softnet {m.name}", m.delta, m.rate_per_s)
        # Series that did not move this cycle learn a zero; negligible ones are
        # forgotten (a zero baseline is the default), so state stays bounded.
        for key, b in list(self.baselines.items()):
            if key in seen:
                continue
            if key[0] not in present:
                del self.baselines[key]
                continue
            b.observe(0.0, alpha=self.p["alpha"], k=self.p["k"], rel_floor=self.p["rel_floor"],
                      abs_floor=self.p["abs_floor_per_s"])
            if b.negligible():
                del self.baselines[key]
        return self.book.update(hits, present, now)
