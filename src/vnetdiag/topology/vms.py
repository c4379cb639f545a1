"""QEMU processes as tap holders: which host device each VM NIC is behind.

From /proc alone: the command line gives the VM's name and its NICs
(``-device virtio-net-pci,netdev=ID,mac=M`` joined to ``-netdev
tap,id=ID,fd=N`` or ``fds=N:M`` or ``ifname=X``), in QEMU's key=value form or
libvirt's JSON form (``-netdev {"type":"tap","fd":"30",...}``); each backend
descriptor number is then resolved to the device it drives: /proc/PID/fd/N
points at /dev/net/tun (a tap, named by ``iff:`` in /proc/PID/fdinfo/N) or at
a macvtap's character device (named by /sys/dev/char/MAJ:MIN). The namespace of
a tap and the MAC of a macvtap are asked of the device through a borrowed
descriptor (system/tunfd.py), because names repeat across namespaces.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from vnetdiag.model.vm import HeldDevice, QemuVm, VmNic
from vnetdiag.system import tunfd


def parse_opts(value: str) -> dict:
    """QEMU option string ("tap,id=n0,fd=3" -> {"": "tap", "id": "n0", "fd": "3"})
    or libvirt's JSON object; ",," is QEMU's escaped comma."""
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return {}
        out = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in data.items()}
        out[""] = out.pop("type", out.pop("driver", ""))
        return out
    parts = value.replace(",,", "\0").split(",")
    out: dict = {}
    for i, part in enumerate(parts):
        part = part.replace("\0", ",")
        key, eq, val = part.partition("=")
        if i == 0 and not eq:
            out[""] = part
        else:
            out[key] = val if eq else "on"
    return out


def is_qemu(argv: list[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]).startswith("qemu-system")


def parse_cmdline(argv: list[str]) -> tuple[str | None, dict[str, dict], list[dict]]:
    """(name, netdevs by id, NIC devices) from a QEMU argv."""
    name = None
    netdevs: dict[str, dict] = {}
    devices: list[dict] = []
    i = 1
    while i < len(argv):
        opt = argv[i].lstrip("-") if argv[i].startswith("-") else None
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if opt == "name":
            o = parse_opts(value)
            name = o.get("guest") or o.get("") or name
        elif opt == "netdev":
            o = parse_opts(value)
            if "id" in o:
                netdevs[o["id"]] = o
        elif opt == "device":
            o = parse_opts(value)
            if "netdev" in o:
                devices.append(o)
        if opt in ("name", "netdev", "device"):
            i += 2
        else:
            i += 1
    return name, netdevs, devices


def held_device(pid: int, fd: int, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> HeldDevice | None:
    base = proc_root / str(pid)
    try:
        target = os.readlink(base / "fd" / str(fd))
    except OSError:
        return None
    if target == "/dev/net/tun":
        try:
            info = (base / "fdinfo" / str(fd)).read_text()
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("iff:"):
                return HeldDevice(kind="tap", name=line.split(":", 1)[1].strip(),
                                  netns_inode=tunfd.ask_borrowed(pid, fd, tunfd.tun_netns_inode))
        return None
    try:
        st = os.stat(base / "fd" / str(fd))
        link = os.readlink(sys_root / f"dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    parts = link.split("/")  # ../../devices/virtual/net/mvtap0/macvtap/tap8
    if "net" in parts[:-1] and parts[-1].startswith("tap") and parts[-1][3:].isdigit():
        name = parts[len(parts) - parts[::-1].index("net")]
        return HeldDevice(kind="macvtap", name=name, ifindex=int(parts[-1][3:]), mac=tunfd.ask_borrowed(pid, fd, tunfd.tap_mac))
    return None


def _tun_fds_by_name(pid: int, proc_root: Path) -> dict[str, list[int]]:
    """For -netdev tap,ifname=X (QEMU opened /dev/net/tun itself): X -> its fds."""
    out: dict[str, list[int]] = {}
    try:
        fds = os.listdir(proc_root / str(pid) / "fd")
    except OSError:
        return out
    for fd in fds:
        try:
            if os.readlink(proc_root / str(pid) / "fd" / fd) != "/dev/net/tun":
                continue
            info = (proc_root / str(pid) / "fdinfo" / fd).read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("iff:"):
                out.setdefault(line.split(":", 1)[1].strip(), []).append(int(fd))
    return out


def vm_of(pid: int, argv: list[str], proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> QemuVm:
    name, netdevs, devices = parse_cmdline(argv)
    by_name = None
    nics = []
    for dev in devices:
        nd = netdevs.get(dev["netdev"], {})
        fds = [int(x) for x in (nd.get("fds") or nd.get("fd") or "").split(":") if x.isdigit()]
        if not fds and nd.get("ifname"):
            by_name = by_name if by_name is not None else _tun_fds_by_name(pid, proc_root)
            fds = by_name.get(nd["ifname"], [])
        held = next((h for h in (held_device(pid, fd, proc_root, sys_root) for fd in fds) if h), None)
        queues = len(fds) if fds else int(nd.get("queues", "1") or 1)
        nics.append(VmNic(netdev=dev["netdev"], model=dev.get("", "?"), mac=(dev.get("mac") or "").lower() or None,
                          queues=queues, vhost=nd.get("vhost") in ("on", "true"), device=held,
                          backend=nd.get("", "?")))
    try:
        ns = os.stat(proc_root / str(pid) / "ns/net").st_ino
    except OSError:
        ns = None
    return QemuVm(pid=pid, name=name or f"qemu[{pid}]", netns_inode=ns, nics=tuple(nics))


def scan_vms(proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> list[QemuVm]:
    """Every QEMU process on the host, with its NICs and their host devices."""
    out = []
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        argv = raw.rstrip(b"\0").decode(errors="replace").split("\0")
        if is_qemu(argv):
            out.append(vm_of(int(entry.name), argv, proc_root, sys_root))
    return out
