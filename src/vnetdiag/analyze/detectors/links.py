"""Carrier and MTU changes, devices and namespaces that disappear.

These are one-off events (change "event"), not lasting conditions:
  * ``carrier-change``: the carrier flag changed, or carrier_changes moved
    (a flap within one interval still counts);
  * ``mtu-change``: the MTU differs from the previous cycle's;
  * ``device-gone``: a device of a namespace that still exists vanished;
  * ``namespace-gone``: a namespace vanished (one event, not one per device).
"""

from __future__ import annotations

from vnetdiag.analyze.detectors.base import Detector, Param, device_subject
from vnetdiag.model.watch import Alert, Observation, Transition


class LinkChanges(Detector):
    name = "link"
    summary = "carrier and MTU changes, disappearing devices and namespaces"
    PARAMS = {
        "carrier": Param(default=True, doc="report carrier changes"),
        "mtu": Param(default=True, doc="report MTU changes"),
        "gone": Param(default=True, doc="report devices and namespaces that disappear"),
    }

    def step(self, obs: Observation) -> list[Transition]:
        if obs.previous is None:
            return []
        now = obs.current.taken_unix_s
        out: list[Transition] = []

        def event(**kw) -> None:
            out.append(Transition(change="event", at_unix_s=now,
                                  alert=Alert(detector=self.name, severity="warning", **kw)))

        before = {i.interface.ref: i.interface for i in obs.previous.interfaces}
        now_ns = {n.inode for n in obs.current.namespaces}
        for ic in obs.current.interfaces:
            new = ic.interface
            old = before.pop(new.ref, None)
            if old is None:
                continue
            ns = new.netns_name
            subject = device_subject(ns, new.name)
            dev = dict(subject=subject, netns=ns, netns_inode=new.ref.netns_inode, device=new.name,
                       ifindex=new.ref.ifindex)
            flapped = (old.carrier_changes is not None and new.carrier_changes is not None
                       and new.carrier_changes != old.carrier_changes)
            if self.p["carrier"] and (old.carrier != new.carrier or flapped):
                state = "up" if new.carrier else "down"
                event(kind="carrier-change", summary=f"carrier of {subject} changed: now {state} "
                                                     f"(carrier_changes {old.carrier_changes} -> {new.carrier_changes})",
                      evidence={"carrier": new.carrier, "operstate": new.operstate,
                                "carrier_changes": new.carrier_changes, "was_carrier": old.carrier}, **dev)
            if self.p["mtu"] and old.mtu != new.mtu:
                event(kind="mtu-change", summary=f"MTU of {subject} changed: {old.mtu} -> {new.mtu}",
                      evidence={"mtu": new.mtu, "was_mtu": old.mtu}, **dev)
        if not self.p["gone"]:
            return out
        gone_ns = {n.inode: n.label for n in obs.previous.namespaces if n.inode not in now_ns}
        for ino, label in gone_ns.items():
            event(kind="namespace-gone", subject=label, netns=label, netns_inode=ino,
                  summary=f"namespace {label} disappeared")
        for ref, old in before.items():
            if ref.netns_inode in gone_ns:
                continue
            ns = old.netns_name
            subject = device_subject(ns, old.name)
            event(kind="device-gone", subject=subject, netns=ns, netns_inode=ref.netns_inode, device=old.name,
                  ifindex=ref.ifindex, summary=f"device {subject} ({old.kind or 'device'}) disappeared",
                  evidence={"kind": old.kind, "mtu": old.mtu})
        return out
