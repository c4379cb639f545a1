"""A guest whose NIC stopped sending (seed 000, seen from the host): the
frames from the guest on its tap or macvtap froze while frames to it went on.

Rule, per tap/macvtap and cycle: no frame came from the guest and at least
``min_to_guest_frames`` were given to it (see analyze/guest_nic.py for which
counter is which), with none of them dropped before the guest could read them
(a reader that stopped reading, such as a paused QEMU, is a full ring, not
this). A guest that receives traffic answers something (ARP, ACKs, RSTs), so
silence under traffic is its transmit path. Raised after ``raise_after``
consecutive cycles, cleared after ``clear_after`` cycles without it. A quiet
guest on a busy broadcast domain receives broadcasts it does not answer:
raise ``min_to_guest_frames`` above that background.
"""

from __future__ import annotations

from vnetdiag.analyze.detectors.base import Detector, Param, device_subject
from vnetdiag.analyze.detectors.moves import by_ref, interval_s
from vnetdiag.analyze.guest_nic import guest_moves
from vnetdiag.model.watch import Alert, Observation, Transition


class GuestTxStall(Detector):
    name = "guest_tx_stall"
    summary = "a VM's NIC stopped sending: nothing from the guest on its tap/macvtap while frames to it go on"
    PARAMS = {
        "raise_after": Param(default=2, doc="consecutive cycles with the condition before raising"),
        "clear_after": Param(default=2, doc="consecutive cycles without it before clearing"),
        "min_to_guest_frames": Param(default=3, doc="frames given to the guest in a cycle that call for an answer"),
    }

    def step(self, obs: Observation) -> list[Transition]:
        now = obs.current.taken_unix_s
        present = {device_subject(i.interface.netns_name, i.interface.name) for i in obs.current.interfaces}
        hits: list[Alert] = []
        if obs.previous is not None:
            before = by_ref(obs.previous)
            dt = interval_s(obs.previous, obs.current)
            for ic in obs.current.interfaces:
                old = before.get(ic.interface.ref)
                m = guest_moves(ic.interface.kind, old.stats, ic.stats) if old is not None else None
                if (m is None or m.from_guest_frames or m.undelivered_frames
                        or m.to_guest_frames < self.p["min_to_guest_frames"]):
                    continue
                iface = ic.interface
                subject = device_subject(iface.netns_name, iface.name)
                to_f, from_f, _ = m.fields
                hits.append(Alert(
                    detector=self.name, subject=subject, kind="guest-silent", severity="critical",
                    summary=(f"the guest behind {subject} stopped sending: 0 frames from it, "
                             f"{m.to_guest_frames} given to it in {dt:.1f} s"),
                    netns=iface.netns_name, netns_inode=iface.ref.netns_inode, device=iface.name,
                    ifindex=iface.ref.ifindex,
                    evidence={"device_kind": iface.kind, "to_guest_frames": m.to_guest_frames,
                              "from_guest_frames": 0, "to_guest_counter": to_f, "from_guest_counter": from_f,
                              "interval_s": round(dt, 3)}))
        return self.book.update(hits, present, now)
