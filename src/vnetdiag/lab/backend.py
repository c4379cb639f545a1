"""The macvtap backend: the lab's stand-in for qemu with vhost-net.

It holds the macvtap's character device open and copies frames between it and
the guest's tap device, in both directions. The macvtap RX ring (frames from the
network waiting for the "VM") is drained only as fast as this process reads it;
the ``slow-guest`` fault slows or stops that reading, so the ring fills and the
kernel drops at the macvtap exactly as it did under seed 001's slow vhost.

Run as ``python -m vnetdiag.lab.backend``. Control: a JSON file
{"rx_pps": null | number, "generation": n} re-read on SIGHUP; null drains at
full speed, 0 stops. Once applied, the generation is written to
``<control>.ack``, so whoever changed it knows it is in force.
The process exits when either device goes away (namespace deleted) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time

from vnetdiag.system.netns import CLONE_NEWNET, setns

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_MAX_FRAME = 65536 + 64
_GONE = {errno.EBADFD, errno.ENODEV, errno.EIO, errno.ENXIO, errno.EBADF}


def _ifreq(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def open_macvtap(chardev: str) -> int:
    fd = os.open(chardev, os.O_RDWR | os.O_NONBLOCK)
    # Clear IFF_VNET_HDR, which macvtap sets on open: we pass plain frames.
    fcntl.ioctl(fd, TUNSETIFF, _ifreq("", IFF_TAP | IFF_NO_PI))
    return fd


def open_tap(netns_path: str, name: str) -> int:
    """Attach to the persistent tap ``name`` in the guest's namespace."""
    ns = os.open(netns_path, os.O_RDONLY)
    try:
        setns(ns, CLONE_NEWNET)
    finally:
        os.close(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, IFF_TAP | IFF_NO_PI))
    return fd


class _Pacer:
    """Token bucket on frames read from the macvtap (the guest's RX)."""

    def __init__(self) -> None:
        self.rx_pps: float | None = None
        self.tokens = 0.0
        self.last = time.monotonic()

    def load(self, control: str) -> None:
        try:
            with open(control) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        value = data.get("rx_pps")
        self.rx_pps = None if value is None else max(0.0, float(value))
        self.tokens = 0.0
        self.last = time.monotonic()
        with open(control + ".ack.tmp", "w") as f:
            f.write(str(data.get("generation", 0)))
        os.replace(control + ".ack.tmp", control + ".ack")

    def allowance(self) -> float:
        """Frames that may be read now (inf when unpaced)."""
        if self.rx_pps is None:
            return float("inf")
        now = time.monotonic()
        burst = max(1.0, self.rx_pps * 0.01)
        self.tokens = min(burst, self.tokens + (now - self.last) * self.rx_pps)
        self.last = now
        return self.tokens

    def wait_s(self) -> float | None:
        if self.rx_pps is None:
            return None
        if self.rx_pps == 0:
            return 1.0
        return max(0.0005, (1.0 - self.tokens) / self.rx_pps)


def serve(mv: int, tap: int, control: str) -> int:
    pacer = _Pacer()
    pacer.load(control)
    reload = False

    def on_hup(_sig, _frm):
        nonlocal reload
        reload = True

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        if reload:
            reload = False
            pacer.load(control)
        allowed = pacer.allowance()
        readers = [tap] + ([mv] if allowed >= 1 else [])
        try:
            ready, _, _ = select.select(readers, [], [], pacer.wait_s() if allowed < 1 else 1.0)
        except InterruptedError:
            continue
        try:
            if mv in ready:
                n = 0
                while n < 64 and (allowed == float("inf") or pacer.tokens >= 1):
                    try:
                        frame = os.read(mv, _MAX_FRAME)
                    except BlockingIOError:
                        break
                    _write(tap, frame)
                    n += 1
                    if allowed != float("inf"):
                        pacer.tokens -= 1
            if tap in ready:
                for _ in range(64):
                    try:
                        frame = os.read(tap, _MAX_FRAME)
                    except BlockingIOError:
                        break
                    _write(mv, frame)
        except OSError as exc:
            if exc.errno in _GONE:
                return 0  # a device went away with its namespace: the lab is gone
            raise


def _write(fd: int, frame: bytes) -> None:
    try:
        os.write(fd, frame)
    except BlockingIOError:
        pass  # the other side's queue is full: drop, as a NIC would


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vnetdiag-lab-backend")
    ap.add_argument("--lab", required=True, help="lab prefix (lets cleanup find stray backends)")
    ap.add_argument("--chardev", required=True)
    ap.add_argument("--tap-netns", required=True)
    ap.add_argument("--tap-name", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--ready-file", required=True, help="written once both devices are open")
    args = ap.parse_args(argv)
    mv = open_macvtap(args.chardev)
    tap = open_tap(args.tap_netns, args.tap_name)
    with open(args.ready_file, "w") as f:
        f.write(str(os.getpid()))
    return serve(mv, tap, args.control)


if __name__ == "__main__":
    sys.exit(main())
