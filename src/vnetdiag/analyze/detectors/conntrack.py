"""Conntrack pressure (seeds 001/004): a connection table close to full, or
already refusing entries.

Per namespace with conntrack loaded:
  * ``table-nearly-full``: nf_conntrack_count / nf_conntrack_max >= ``warn_ratio``;
  * ``refusing``: insert_failed + drop + early_drop grew by at least
    ``min_drops`` in the interval (the table is full or contended now);
  * ``filling``: at the current growth rate the table is full within
    ``horizon_s`` (and is at least ``filling_min_ratio`` used).
Every alert carries the forecast: growth rate (an EWMA of the count's
change per second) and ``time_to_full_s`` ((max - count) / rate; 0 when full,
None when not growing), and the ephemeral-port arithmetic of seed 004: with
the client port range lo..hi (net.ipv4.ip_local_port_range), one client
talking to one server port can hold hi - lo + 1 entries, so
ceil(max / ports) such clients fill the table; with ``clients`` configured,
clients x ports is compared to the table size.
"""

from __future__ import annotations

import math

from vnetdiag.analyze.detectors.base import Detector, Param
from vnetdiag.analyze.detectors.moves import move
from vnetdiag.model.namespaces import inode_label
from vnetdiag.model.watch import Alert, Observation, Transition

_REFUSALS = ("insert_failed", "drop", "early_drop")


def port_arithmetic(limit: int, port_range: tuple[int, int] | None, clients: int) -> dict:
    """The seed-004 numbers for a table of ``limit`` entries."""
    if not port_range or limit <= 0:
        return {}
    lo, hi = port_range
    ports = hi - lo + 1
    out: dict = {"local_port_range": f"{lo}-{hi}", "ports_per_client": ports,
                 "clients_to_fill_table": math.ceil(limit / ports)}
    if clients:
        out["clients"] = clients
        out["client_tuples"] = clients * ports
        out["client_tuples_vs_limit"] = round(clients * ports / limit, 3)
    return out


def _arith_text(a: dict, limit: int) -> str:
    if not a:
        return ""
    text = (f"; ephemeral ports {a['local_port_range']} = {a['ports_per_client']} per client and server port: "
            f"{a['clients_to_fill_table']} clients fill {limit} entries")
    if "clients" in a:
        text += f"; {a['clients']} clients x {a['ports_per_client']} = {a['client_tuples']} tuples " \
                f"({a['client_tuples_vs_limit'] * 100:.0f}% of the table)"
    return text


class ConntrackPressure(Detector):
    name = "conntrack"
    summary = "conntrack count against its limit, refused entries, forecast time to full, ephemeral-port arithmetic"
    PARAMS = {
        "raise_after": Param(default=1, doc="cycles with the condition before raising"),
        "clear_after": Param(default=3, doc="cycles without it before clearing"),
        "warn_ratio": Param(default=0.8, doc="count / max that raises table-nearly-full"),
        "min_drops": Param(default=1, doc="insert_failed + drop + early_drop per interval that raises refusing"),
        "horizon_s": Param(default=600.0, doc="raise filling when full within this many seconds"),
        "filling_min_ratio": Param(default=0.5, doc="filling needs at least this fill ratio"),
        "alpha": Param(default=0.3, doc="EWMA weight of the count growth rate"),
        "clients": Param(default=0, doc="clients behind the table, for the ephemeral-port arithmetic (0: unknown)"),
    }

    def __init__(self, params: dict | None = None) -> None:
        super().__init__(params)
        self.growth: dict[int, tuple[int, float, float]] = {}
        """netns inode -> (last count, its time, EWMA growth per second)."""

    def step(self, obs: Observation) -> list[Transition]:
        now = obs.current.taken_unix_s
        names = {n.inode: n.label for n in obs.current.namespaces}
        present = set(names.values())
        refused: dict[int, dict[str, int]] = {}
        if obs.previous is not None:
            prev = {s.netns_inode: s.conntrack for s in obs.previous.netns_stats if s.conntrack}
            for s in obs.current.netns_stats:
                old = prev.get(s.netns_inode)
                if old is None or s.conntrack is None:
                    continue
                sums = {k: 0 for k in _REFUSALS}
                for ra, rb in zip(old.per_cpu, s.conntrack.per_cpu):  # per-CPU, 32-bit
                    for k in _REFUSALS:
                        sums[k] += move(ra, rb, k, 32)
                refused[s.netns_inode] = {k: v for k, v in sums.items() if v}
        hits: list[Alert] = []
        alive = set()
        for s in obs.current.netns_stats:
            ct = s.conntrack
            if ct is None or ct.count is None or not ct.limit:
                continue
            alive.add(s.netns_inode)
            label = names.get(s.netns_inode) or inode_label(s.netns_inode)
            t = obs.current.taken_monotonic_s
            last = self.growth.get(s.netns_inode)
            rate = 0.0
            if last is not None and t > last[1]:
                inst = (ct.count - last[0]) / (t - last[1])
                rate = last[2] + self.p["alpha"] * (inst - last[2])
            self.growth[s.netns_inode] = (ct.count, t, rate)
            ratio = ct.count / ct.limit
            ttf = 0.0 if ct.count >= ct.limit else ((ct.limit - ct.count) / rate if rate > 0 else None)
            arith = port_arithmetic(ct.limit, obs.port_range, int(self.p["clients"]))
            r = refused.get(s.netns_inode, {})
            evidence = {"count": ct.count, "limit": ct.limit, "fill_ratio": round(ratio, 4),
                        "growth_per_s": round(rate, 3),
                        "time_to_full_s": None if ttf is None else round(ttf, 1),
                        **{f"{k}_delta": v for k, v in r.items()}, **arith}
            forecast = ("full now" if ttf == 0 else "not growing" if ttf is None
                        else f"full in {ttf:.0f} s at {rate:.1f}/s")
            head = f"conntrack in {label}: {ct.count}/{ct.limit} entries ({ratio:.0%}), {forecast}"
            tail = _arith_text(arith, ct.limit)
            common = dict(detector=self.name, subject=label, netns=label, netns_inode=s.netns_inode,
                          evidence=evidence)
            if ratio >= self.p["warn_ratio"]:
                hits.append(Alert(kind="table-nearly-full", severity="critical" if ratio >= 1 else "warning",
                                  summary=head + tail, **common))
            if r and sum(r.values()) >= self.p["min_drops"]:
                what = ", ".join(f"{k} +{v}" for k, v in r.items() if v)
                hits.append(Alert(kind="refusing", severity="critical",
                                  summary=f"{head}; refusing entries ({what}){tail}", **common))
            if ttf is not None and 0 < ttf <= self.p["horizon_s"] and ratio >= self.p["filling_min_ratio"]:
                hits.append(Alert(kind="filling", severity="warning", summary=head + tail, **common))
        for ino in list(self.growth):
            if ino not in alive:
                del self.growth[ino]
        return self.book.update(hits, present, now)
