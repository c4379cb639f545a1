"""Which counters of a tap or macvtap are its guest's transmit and receive.

A tap (the tun driver) counts in RX the frames its reader (QEMU) wrote, which
is what the guest sent, and in TX the frames the reader took, which is what the
guest was given; frames it could not queue for the reader are TX drops. A
macvtap is the other way round: RX counts the frames the lower device queued
to the guest's ring (those the full ring refused are RX drops), TX what the
guest sent. Pure: two counter dicts in, moves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vnetdiag.analyze.deltas import counter_delta

# Device kind (IFLA_INFO_KIND) -> (to the guest, from the guest, dropped before the guest read them).
_FIELDS = {
    "tun": ("tx_packets", "rx_packets", "tx_dropped"),
    "macvtap": ("rx_packets", "tx_packets", "rx_dropped"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class GuestNicMoves:
    to_guest_frames: int
    from_guest_frames: int
    undelivered_frames: int
    """Frames for the guest that the host dropped before its reader took them."""
    fields: tuple[str, str, str]
    """The counters read: (to the guest, from the guest, undelivered)."""


def is_guest_nic(kind: str | None) -> bool:
    return kind in _FIELDS


def guest_moves(kind: str | None, old: Mapping[str, int], new: Mapping[str, int]) -> GuestNicMoves | None:
    """The guest's side of a tap's or macvtap's counter moves; None for other kinds
    or when a counter is missing."""
    fields = _FIELDS.get(kind or "")
    if fields is None or any(old.get(f) is None or new.get(f) is None for f in fields):
        return None
    to, frm, lost = (counter_delta(old[f], new[f], 64)[0] for f in fields)
    return GuestNicMoves(to_guest_frames=to, from_guest_frames=frm, undelivered_frames=lost, fields=fields)
