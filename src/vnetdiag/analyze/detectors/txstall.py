"""TX stall (seed 000): a device whose transmit counter stopped while packets
wait in its qdisc or the qdisc drops them.

Rule, per device and cycle:
  * ``backlog-frozen``: TX packets did not move and the root qdisc holds at
    least ``min_backlog_packets`` packets;
  * ``drops-frozen``: TX packets did not move and a qdisc of the device dropped
    packets;
  * per queue, where the device has a multiqueue root (mq/mqprio): a child
    qdisc of queue N with a backlog whose own sent-packet counter did not move
    (``backlog-frozen`` on subject ".../tx-queue N");
  * ``watchdog``: a net:net_dev_xmit_timeout event for the device and queue
    (only when the tracer runs).
Raised after ``raise_after`` consecutive cycles, cleared after ``clear_after``
cycles without the condition.
"""

from __future__ import annotations

from vnetdiag.analyze.detectors.base import Detector, Param, device_subject
from vnetdiag.analyze.detectors.moves import by_ref, move, qdisc_move, qdisc_pairs
from vnetdiag.model.counters import InterfaceCounters
from vnetdiag.model.watch import Alert, Observation, Transition

_MULTIQUEUE = {"mq", "mqprio", "taprio"}


class TxStall(Detector):
    name = "tx_stall"
    summary = "TX packets frozen while the qdisc backlog stays above zero or qdisc drops grow"
    PARAMS = {
        "raise_after": Param(default=2, doc="consecutive cycles with the condition before raising"),
        "clear_after": Param(default=2, doc="consecutive cycles without it before clearing"),
        "min_backlog_packets": Param(default=1, doc="root qdisc backlog (packets) that counts as waiting"),
    }

    def step(self, obs: Observation) -> list[Transition]:
        now = obs.current.taken_unix_s
        present = {device_subject(i.interface.netns_name, i.interface.name)
                   for i in obs.current.interfaces}
        hits: list[Alert] = []
        if obs.previous is not None:
            before = by_ref(obs.previous)
            for ic in obs.current.interfaces:
                old = before.get(ic.interface.ref)
                if old is not None:
                    hits.extend(self._check(old, ic, present))
        by_name = {(i.interface.ref.netns_inode, i.interface.name): i for i in obs.current.interfaces}
        for ev in obs.xmit_timeouts:
            ic = next((i for (ino, name), i in by_name.items()
                       if name == ev.device and (ev.netns_inode is None or ino == ev.netns_inode)), None)
            ns = (ic.interface.netns_name if ic else None) or "?"
            subject = device_subject(ns, ev.device, ev.queue)
            present.add(subject)
            hits.append(Alert(detector=self.name, subject=subject, kind="watchdog", severity="critical",
                              summary=f"netdev watchdog: transmit queue {ev.queue} of {ns}/{ev.device} timed out",
                              netns=ns, netns_inode=ev.netns_inode, device=ev.device,
                              ifindex=ic.interface.ref.ifindex if ic else None, queue=ev.queue,
                              evidence={"event": "net:net_dev_xmit_timeout"}))
        return self.book.update(hits, present, now)

    def _check(self, old: InterfaceCounters, ic: InterfaceCounters, present: set[str]) -> list[Alert]:
        iface = ic.interface
        ns = iface.netns_name
        tx = move(old.stats, ic.stats, "tx_packets")
        pairs = list(qdisc_pairs(old, ic))
        roots = [q for _, q in pairs if q.parent == "root"]
        backlog = sum(q.backlog_packets for q in roots)
        backlog_b = sum(q.backlog_bytes for q in roots)
        qdrops = sum(qdisc_move(a, b, "drops") for a, b in pairs if b.parent == "root")
        common = dict(detector=self.name, netns=ns, netns_inode=iface.ref.netns_inode, device=iface.name,
                      ifindex=iface.ref.ifindex)
        evidence = {"tx_packets_delta": tx, "backlog_packets": backlog, "backlog_bytes": backlog_b,
                    "qdisc_drops_delta": qdrops, "qdisc": ",".join(f"{q.kind} {q.handle}" for q in roots)}
        out: list[Alert] = []
        subject = device_subject(ns, iface.name)
        if tx == 0 and backlog >= self.p["min_backlog_packets"]:
            out.append(Alert(subject=subject, kind="backlog-frozen", severity="critical",
                             summary=f"TX stalled on {subject}: tx_packets frozen, qdisc backlog "
                                     f"{backlog}p/{backlog_b}b", evidence=evidence, **common))
        elif tx == 0 and qdrops > 0:
            out.append(Alert(subject=subject, kind="drops-frozen", severity="critical",
                             summary=f"TX stalled on {subject}: tx_packets frozen, qdisc dropped {qdrops}",
                             evidence=evidence, **common))
        # Per queue: children of a multiqueue root are attached at parent "<root>:<queue+1>".
        mq = {q.handle for q in roots if q.kind in _MULTIQUEUE}
        for prev_q, q in pairs:
            if ":" not in q.parent or q.parent == "root":
                continue
            major, _, minor = q.parent.partition(":")
            if f"{major}:" not in mq or not minor:
                continue
            queue = int(minor, 16) - 1
            qsubject = device_subject(ns, iface.name, queue)
            present.add(qsubject)
            if (prev_q is not None and q.backlog_packets >= self.p["min_backlog_packets"]
                    and qdisc_move(prev_q, q, "packets") == 0):
                out.append(Alert(subject=qsubject, kind="backlog-frozen", severity="critical", queue=queue,
                                 summary=f"TX queue {queue} of {ns}/{iface.name} stalled: {q.kind} {q.handle} "
                                         f"holds {q.backlog_packets}p and sent nothing",
                                 evidence={"queue_packets_delta": 0, "backlog_packets": q.backlog_packets,
                                           "backlog_bytes": q.backlog_bytes, "qdisc": f"{q.kind} {q.handle}"},
                                 **common))
        return out
