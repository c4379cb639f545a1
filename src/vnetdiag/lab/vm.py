"""QEMU guests for the lab: start, wait for boot, pause/resume over QMP, stop.

A VM's NICs are virtio-net-pci devices whose backends are file descriptors
this process opens and hands to QEMU (``-netdev tap,fd=N`` / ``fds=N:M``), as
libvirt does: a tap opened on /dev/net/tun inside the hypervisor node's
namespace (it lives exactly as long as a descriptor holds it, so it vanishes
with QEMU), or a macvtap's /dev/tapN character device.

QEMU is started gated (``lab.shell.spawn_journaled``, as the macvtap backend
is): the child (a shell) blocks on a pipe until the parent has journaled
``KillProcess(pid, start ticks)``, then execs QEMU in place; if the parent dies
first the pipe closes and the child exits without ever becoming QEMU. So a
``lab up`` killed at any instant leaves no QEMU that the journal does not name.

Boot is complete when the guest's /init prints ``guest_image.READY_LINE`` on
the serial console (QEMU logs the console to a file); the serial socket is
also the guest's control channel ("poweroff"). Acceleration: KVM when a short
probe boots the guest kernel under it, else TCG; the probe's answer is cached
per host boot (nested KVM on this machine hangs in early boot).

The console also takes requests to /init: ``tx_stall``/``tx_resume`` put a
qdisc that stops sending on a guest NIC and take it away (seed 000).

``python -m vnetdiag.lab.vm --qmp PATH stop|cont|status`` and
``... --serial S --console C --mac MAC tx-resume`` are the undo commands that
fault journals record.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import KernelError
from vnetdiag.lab import guest_image
from vnetdiag.lab.shell import spawn_journaled
from vnetdiag.system import nsexec, proc
from vnetdiag.system.netns import entered
from vnetdiag.system.undo import Journal, RemovePath

QEMU = "qemu-system-x86_64"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x4000, 0x0100
KVM_PROBE_S = 4.0
"""A working KVM prints the kernel banner in well under a second; TCG needs ~1 s."""
BOOT_TIMEOUT_S = {"kvm": 30.0, "tcg": 120.0}


@dataclass(frozen=True, kw_only=True, slots=True)
class Nic:
    """One virtio-net NIC and the host descriptors behind it (one per queue)."""

    mac: str
    fds: tuple[int, ...]
    host: str
    """Label of the host-side device, "NODE:NAME" (a tap or a macvtap)."""
    host_kind: str
    """"tap" or "macvtap"."""
    address: str | None = None
    """The guest's address with prefix length, configured by its /init."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningVm:
    name: str
    pid: int
    start_ticks: int
    accel: str
    """"kvm" or "tcg"."""
    qmp: str
    serial: str
    console: str
    """File QEMU copies the serial console to."""
    boot_s: float
    """From spawn to the guest's ready line."""
    nics: tuple[dict, ...]


def open_tap(netns_path: str, name: str, queues: int = 1) -> list[int]:
    """Create tap ``name`` in the namespace at ``netns_path``, held by the
    returned descriptors (one per queue; multiqueue when more than one)."""
    flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (IFF_MULTI_QUEUE if queues > 1 else 0)
    fds: list[int] = []
    with entered(netns_path):
        try:
            for _ in range(queues):
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
                fds.append(fd)
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise KernelError(f"cannot create tap {name}: {exc.strerror}") from None
    return fds


def open_macvtap(chardev: str, queues: int = 1) -> list[int]:
    """Descriptors on a macvtap's character device (macvtap sets IFF_VNET_HDR
    on open, which QEMU detects and uses)."""
    try:
        return [os.open(chardev, os.O_RDWR | os.O_CLOEXEC) for _ in range(queues)]
    except OSError as exc:
        raise KernelError(f"cannot open macvtap device {chardev}: {exc.strerror}") from None


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def choose_accel(image: guest_image.GuestImage, run_dir: Path, journal: Journal) -> tuple[str, str]:
    """("kvm"|"tcg", why). $VNETDIAG_VM_ACCEL forces one; otherwise a cached
    probe: boot the guest kernel under KVM and wait briefly for its banner."""
    forced = os.environ.get("VNETDIAG_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "forced by VNETDIAG_VM_ACCEL"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    cache = guest_image.cache_dir() / "kvm-probe.json"
    try:
        data = json.loads(cache.read_text())
        if data.get("boot_id") == _boot_id():
            return data["accel"], data["why"] + " (cached for this host boot)"
    except (OSError, ValueError, KeyError):
        pass
    console = run_dir / "kvm-probe.console"
    journal.record(RemovePath(path=str(console)))
    argv = [QEMU, "-accel", "kvm", "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-kernel", str(image.kernel), "-append", "console=ttyS0 panic=-1",
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con"]
    child = spawn_journaled(argv, run_dir / "kvm-probe.log", journal, pass_fds=())
    t0 = time.monotonic()
    booted = False
    try:
        while time.monotonic() - t0 < KVM_PROBE_S and child.poll() is None:
            if console.exists() and b"Linux version" in console.read_bytes():
                booted = True
                break
            time.sleep(0.05)
    finally:
        proc.terminate(proc.ProcessId(pid=child.pid, start_ticks=proc.start_ticks(child.pid) or 0))
        child.wait()
        console.unlink(missing_ok=True)
    accel, why = (("kvm", f"KVM probe booted in {time.monotonic() - t0:.1f} s") if booted else
                  ("tcg", f"KVM probe printed nothing in {KVM_PROBE_S:.0f} s (nested KVM hangs)"))
    cache.write_text(json.dumps({"boot_id": _boot_id(), "accel": accel, "why": why}))
    return accel, why


def start(name: str, nics: list[Nic], image: guest_image.GuestImage, run_dir: Path, journal: Journal, *,
          accel: str, memory_mb: int = 256, routes: tuple[tuple[str, str], ...] = (),
          label: str | None = None, serve_port: int | None = None) -> tuple[subprocess.Popen, dict]:
    """Spawn QEMU for one VM (not waiting for boot: see ``wait_ready``). The
    descriptors in ``nics`` are passed to QEMU; the caller closes its copies.

    ``serve_port``: the guest runs vnetdiag's probe server on that port, with
    this host's Python and vnetdiag: the host's / is shared read-only over
    virtio-9p (nothing in the guest can write to it)."""
    nsexec.need(QEMU, "qemu-system-x86")
    qmp, serial, console = (str(run_dir / f"vm-{name}.{ext}") for ext in ("qmp", "serial", "console"))
    for path in (qmp, serial, console):
        journal.record(RemovePath(path=path))
        Path(path).unlink(missing_ok=True)
    kargs = ["console=ttyS0", "panic=-1", "quiet", f"vnd.name={name}"]
    kargs += [f"vnd.if={n.mac}@{n.address or ''}" for n in nics]
    kargs += [f"vnd.route={to}@{via}" for to, via in routes]
    if serve_port is not None:
        kargs.append(f"vnd.serve={serve_port}@{sys.executable}")
    argv = [QEMU, "-name", f"guest={label or name}", "-accel", accel, "-m", str(memory_mb), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", " ".join(kargs),
            "-chardev", f"socket,id=serial0,path={serial},server=on,wait=off,logfile={console}",
            "-serial", "chardev:serial0", "-qmp", f"unix:{qmp},server=on,wait=off"]
    for i, n in enumerate(nics):
        fds = ":".join(map(str, n.fds))
        netdev = f"tap,id=net{i},{'fds' if len(n.fds) > 1 else 'fd'}={fds},vhost=off"
        device = f"virtio-net-pci,netdev=net{i},mac={n.mac}"
        if len(n.fds) > 1:
            device += f",mq=on,vectors={2 * len(n.fds) + 2}"
        argv += ["-netdev", netdev, "-device", device]
    if serve_port is not None:
        argv += ["-fsdev", "local,id=vndhost,path=/,security_model=none,readonly=on",
                 "-device", "virtio-9p-pci,fsdev=vndhost,mount_tag=vndhost"]
    pass_fds = [fd for n in nics for fd in n.fds]
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    child = spawn_journaled(argv, run_dir / f"vm-{name}.log", journal, pass_fds=pass_fds)
    info = {"node": name, "pid": child.pid, "start_ticks": proc.start_ticks(child.pid) or 0, "accel": accel,
            "qmp": qmp, "serial": serial, "console": console, "log": str(run_dir / f"vm-{name}.log"),
            "nics": [{"mac": n.mac, "host": n.host, "host_kind": n.host_kind, "address": n.address,
                      "queues": len(n.fds)} for n in nics], "spawned_unix_s": time.time(),
            "serve_port": serve_port}
    return child, info


def wait_ready(child: subprocess.Popen, info: dict, *, timeout_s: float | None = None) -> float:
    """Block until the guest prints its ready line; return seconds since spawn."""
    timeout_s = timeout_s or BOOT_TIMEOUT_S[info["accel"]]
    console = Path(info["console"])
    deadline = time.monotonic() + timeout_s
    marker = guest_image.READY_LINE.encode()
    while True:
        text = console.read_bytes() if console.exists() else b""
        if marker in text:
            failed = next((line for line in text.decode(errors="replace").splitlines()
                           if line.startswith(guest_image.SERVE_FAILED)), None)
            if failed is not None:
                raise KernelError(f"VM {info['node']}: vnetdiag's server did not start in the guest: "
                                  f"{failed.removeprefix(guest_image.SERVE_FAILED).strip()}",
                                  hint=f"console log: {console}; or set serve = false on the node")
            return time.time() - info["spawned_unix_s"]
        if child.poll() is not None or time.monotonic() > deadline:
            log = Path(info["log"]).read_text(errors="replace").strip().splitlines()
            tail = (text.decode(errors="replace").strip().splitlines() or log or ["no output"])[-1]
            why = f"QEMU exited with status {child.returncode}" if child.returncode is not None else \
                f"not ready within {timeout_s:.0f} s ({info['accel']})"
            raise KernelError(f"VM {info['node']} did not boot: {why}; last line: {tail}",
                              hint=f"console log: {console}")
        time.sleep(0.05)


class Qmp:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path: str, timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise KernelError(f"cannot reach QMP at {path}: {exc.strerror}",
                              hint="is the VM still running? (vnetdiag lab status)") from None
        self.buf = b""
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise KernelError("QMP connection closed by QEMU")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments) -> dict:
        msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise KernelError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")

    def close(self) -> None:
        self.sock.close()


def qmp_command(path: str, command: str) -> dict:
    q = Qmp(path)
    try:
        return q.execute(command)
    finally:
        q.close()


def poweroff(info: dict, *, timeout_s: float = 10.0) -> None:
    """Ask the guest to power off over its console; SIGTERM, then SIGKILL, if it does not."""
    pid = proc.ProcessId(pid=info["pid"], start_ticks=info["start_ticks"])
    if not proc.is_alive(pid):
        return
    deadline = time.monotonic() + timeout_s
    # Stay connected until QEMU exits: a client that hangs up at once may be
    # dropped before QEMU has passed its bytes to the guest's UART.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(info["serial"])
        s.sendall(b"poweroff\n")
    except OSError:
        pass
    try:
        while proc.is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        s.close()
    proc.terminate(pid)


def console_request(info: dict, line: str, expect: str, *, timeout_s: float = 15.0) -> None:
    """Send one request line to the guest's /init over its serial socket and
    wait until ``expect`` appears on the console after what it held before
    (the tty echoes the request itself, so ``expect`` must differ from it)."""
    console = Path(info["console"])
    start = console.stat().st_size if console.exists() else 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect(info["serial"])
        s.sendall(line.encode() + b"\n")
        # Stay connected until the answer: QEMU may drop the bytes of a client that hangs up at once.
        deadline = time.monotonic() + timeout_s
        while expect.encode() not in console.read_bytes()[start:]:
            if time.monotonic() > deadline:
                raise KernelError(f"VM {info['node']} did not answer {line!r} within {timeout_s:g} s",
                                  hint=f"console log: {console}")
            time.sleep(0.05)
    except OSError as exc:
        raise KernelError(f"cannot reach the console of VM {info['node']} ({info['serial']}): {exc.strerror}",
                          hint="vnetdiag lab status: is the VM running?") from None
    finally:
        s.close()


def tx_stall(info: dict, mac: str) -> None:
    """Stop the guest NIC with ``mac`` from sending (tbf that passes nothing, inside the guest)."""
    console_request(info, f"tx-stall {mac}", f"{guest_image.TX_STALL_ACK} {mac} on")


def tx_resume(info: dict, mac: str) -> None:
    console_request(info, f"tx-resume {mac}", f"{guest_image.TX_STALL_ACK} {mac} off")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="vnetdiag-lab-vm", description="QMP or console request to a lab VM")
    ap.add_argument("--qmp", help="QMP socket (stop, cont, status)")
    ap.add_argument("--serial", help="serial socket (tx-resume)")
    ap.add_argument("--console", help="console log the guest answers on (tx-resume)")
    ap.add_argument("--mac", help="the guest NIC (tx-resume)")
    ap.add_argument("command", choices=("stop", "cont", "status", "tx-resume"))
    args = ap.parse_args(argv)
    if args.command == "tx-resume":
        try:
            tx_resume({"node": args.serial, "serial": args.serial, "console": args.console}, args.mac)
        except KernelError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if args.command == "status":
        print(json.dumps(qmp_command(args.qmp, "query-status")))
        return 0
    try:
        qmp_command(args.qmp, args.command)
    except KernelError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
