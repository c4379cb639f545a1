"""QEMU guests as discovery sees them from the host: a process and the host
devices behind each of its NICs. What runs inside is not observable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True, slots=True)
class HeldDevice:
    """The host device one of the VM's descriptors drives."""

    kind: Literal["tap", "macvtap"]
    name: str
    ifindex: int | None = None
    """Known for a macvtap (its /dev/tapN names it); None for a tap."""
    netns_inode: int | None = None
    """A tap's namespace (TUNGETDEVNETNS on a borrowed descriptor); None if unknown."""
    mac: str | None = None
    """A macvtap's MAC (SIOCGIFHWADDR on a borrowed descriptor)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VmNic:
    netdev: str
    """The -netdev id that joins the device to its backend."""
    model: str
    """The -device driver, e.g. "virtio-net-pci"."""
    mac: str | None
    queues: int
    """Backend descriptors (fds=a:b) or queues=N: the queue pairs QEMU opened."""
    vhost: bool
    device: HeldDevice | None
    """None when the backend is not a tap (user networking, a socket, vhost-user)."""
    backend: str = "tap"
    """The -netdev type: tap (taps and macvtaps both), user, socket, vhost-user, ..."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QemuVm:
    pid: int
    name: str
    """-name guest=NAME (or the bare -name), else "qemu[PID]"."""
    netns_inode: int | None
    """The namespace the QEMU process itself runs in."""
    nics: tuple[VmNic, ...]
