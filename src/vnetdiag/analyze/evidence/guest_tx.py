"""A guest that stopped sending (seed 000 seen from the host): on the path's
tap or macvtap, frames went to the guest during the window and none came back,
and the host dropped none of them before the guest read them (a reader that
stopped, such as a paused QEMU, fills the ring instead: see packets/counters).
Only while the probe saw loss: an idle guest that answers nothing it was not
asked is no symptom."""

from __future__ import annotations

from vnetdiag.analyze.evidence.base import Candidates, Context
from vnetdiag.analyze.guest_nic import guest_moves

name = "guest-tx"
source = "counter"
weight = 0.7  # frozen counters under traffic are observed state, like a stalled qdisc
confirm = ("ip -s link show dev {device} in {netns}: the frames from the guest (a tap's RX, a macvtap's TX) "
           "stay put while those to it grow; inside the guest, tc -s qdisc and ethtool -S show where its "
           "packets wait (a stuck virtio TX queue, a qdisc that stopped)")

MIN_TO_GUEST_FRAMES = 3
"""Frames given to the guest in the window with no answer: fewer could be a
single frame read as the guest stopped."""


def candidates(ctx: Context, out: Candidates) -> None:
    s = ctx.bundle.symptom
    if not (s.losses or s.errors):
        return
    old = {i.interface.ref: i for i in ctx.bundle.before.interfaces}
    for now in ctx.bundle.after.interfaces:
        i = now.interface
        prev = old.get(i.ref)
        if prev is None or (i.ref.netns_inode, i.name) not in ctx.path_keys:
            continue
        m = guest_moves(i.kind, prev.stats, now.stats)
        if (m is None or m.from_guest_frames or m.undelivered_frames
                or m.to_guest_frames < MIN_TO_GUEST_FRAMES):
            continue
        to_f, from_f, _ = m.fields
        c = out.at(i.ref.netns_inode, i.name, "guest-tx-stall", direction="from-guest")
        c.reason = "the guest sent nothing"
        c.add(name, m.to_guest_frames, source, (
            f"{i.name} ({i.kind}) gave the guest {m.to_guest_frames} frames in the window ({to_f} "
            f"+{m.to_guest_frames}) and received none from it ({from_f} +0): the guest's NIC stopped sending"))


def merge(ctx: Context, out: Candidates) -> None:
    """Nothing to fold: the guest's lost packets never reach a host counter."""
