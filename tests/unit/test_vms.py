"""topology/vms.py on recorded QEMU command lines and fd tables (tests/golden/vms/,
copied from /proc/PID of lab VMs on this machine), and the guest image's
pure parts (cpio archive, module order from a depmod file)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from vnetdiag.errors import KernelError
from vnetdiag.lab import guest_image, guest_tools
from vnetdiag.topology import vms

GOLDEN = Path(__file__).parent.parent / "golden" / "vms"


def _argv(name: str) -> list[str]:
    return (GOLDEN / name).read_bytes().rstrip(b"\0").decode().split("\0")


def test_lab_qemu_cmdline_gives_name_netdev_fd_and_nic():
    argv = _argv("qemu-tap.cmdline")
    assert vms.is_qemu(argv)
    name, netdevs, devices = vms.parse_cmdline(argv)
    assert name == "hv-vm1"
    assert netdevs["net0"][""] == "tap" and netdevs["net0"]["fd"] == "4" and netdevs["net0"]["vhost"] == "off"
    assert devices == [{"": "virtio-net-pci", "netdev": "net0", "mac": "52:54:00:79:4d:65"}]


def test_libvirt_json_netdev_and_device_forms():
    # The JSON forms libvirt (>= 7) passes to QEMU >= 6.
    argv = ["/usr/bin/qemu-system-x86_64", "-name", "guest=web1,debug-threads=on",
            "-netdev", '{"type":"tap","fds":"31:33","vhost":true,"vhostfds":"34:35","id":"hostnet0"}',
            "-device", '{"driver":"virtio-net-pci","netdev":"hostnet0","id":"net0","mac":"52:54:00:AB:CD:EF","mq":true}']
    name, netdevs, devices = vms.parse_cmdline(argv)
    assert name == "web1"
    assert netdevs["hostnet0"][""] == "tap" and netdevs["hostnet0"]["fds"] == "31:33"
    vm = vms.vm_of(999999999, argv, proc_root=Path("/nonexistent"))
    (nic,) = vm.nics
    assert nic.mac == "52:54:00:ab:cd:ef" and nic.queues == 2 and nic.vhost and nic.device is None


def test_escaped_comma_and_bare_name():
    assert vms.parse_opts("plain") == {"": "plain"}
    assert vms.parse_opts("guest=a,,b,x=1")["guest"] == "a,b"


def test_fd_of_recorded_tap_resolves_to_its_device(tmp_path):
    # A /proc tree with the recorded fd 4 -> /dev/net/tun and its fdinfo.
    pid = 424242
    (tmp_path / str(pid) / "fd").mkdir(parents=True)
    (tmp_path / str(pid) / "fdinfo").mkdir()
    os.symlink("/dev/net/tun", tmp_path / str(pid) / "fd" / "4")
    (tmp_path / str(pid) / "fdinfo" / "4").write_text((GOLDEN / "qemu-tap.fdinfo4").read_text())
    (tmp_path / str(pid) / "cmdline").write_bytes((GOLDEN / "qemu-tap.cmdline").read_bytes())
    (found,) = vms.scan_vms(proc_root=tmp_path)
    (nic,) = found.nics
    assert found.pid == pid and found.name == "hv-vm1"
    assert nic.device is not None and nic.device.kind == "tap" and nic.device.name == "vm1-t0"
    assert nic.device.netns_inode is None  # no such process to borrow the descriptor from


def test_newc_archive_is_what_cpio_reads(tmp_path):
    data = guest_image.newc_archive({"bin": None, "bin/busybox": b"\x7fELF..", "init": b"#!/bin/sh\n"})
    # Layout checks a kernel relies on: magic, 4-byte alignment, trailer.
    assert data.startswith(b"070701") and len(data) % 4 == 0 and b"TRAILER!!!" in data
    assert data.index(b"bin\0") < data.index(b"bin/busybox\0")
    mode_init = int(data[data.index(b"init\0") - 110 + 14: data.index(b"init\0") - 110 + 22], 16)
    assert mode_init & 0o777 == 0o755
    assert gzip.decompress(gzip.compress(data)) == data


def test_module_order_puts_dependencies_first():
    # The lines depmod -b wrote for the Debian 6.1 guest kernel's virtio modules.
    dep = GOLDEN / "modules.dep.virtio"
    order = [Path(p).stem for p in guest_image.module_order(dep, ("virtio_pci", "virtio_net"))]
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("virtio_pci_modern_dev") < order.index("virtio_pci")
    assert order.index("virtio_ring") < order.index("virtio_net")
    assert len(order) == len(set(order)) == 8


def test_ldd_output_gives_the_libraries_and_the_loader_not_the_vdso():
    # `ldd /sbin/tc` on this Debian 12 host (iproute2 6.1).
    libs, loader = guest_tools.parse_ldd((GOLDEN / "ldd-tc.txt").read_text())
    assert loader == "/lib64/ld-linux-x86-64.so.2"
    assert "/lib/x86_64-linux-gnu/libc.so.6" in libs and "/lib/x86_64-linux-gnu/libbpf.so.1" in libs
    assert not [lib for lib in libs if "vdso" in lib] and len(libs) == len(set(libs)) == 10


def test_tool_files_are_taken_from_the_unpacked_packages_following_their_symlinks(tmp_path):
    # Where Debian 12's packages put them: libbpf1 under /usr/lib with a soname link,
    # libc6's loader as an absolute link from /lib64; the guest wants them where ldd found them.
    root = tmp_path / "tree"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/libbpf.so.1.1.2").write_bytes(b"bpf")
    (root / "usr/lib/x86_64-linux-gnu/libbpf.so.1").symlink_to("libbpf.so.1.1.2")
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"ld")
    (root / "lib64").mkdir()
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (root / "sbin").mkdir()
    (root / "sbin/tc").write_bytes(b"tc")
    closure = guest_tools.Closure(files=("/sbin/tc", "/lib/x86_64-linux-gnu/libbpf.so.1",
                                         "/lib64/ld-linux-x86-64.so.2"), packages=("iproute2",),
                                  executables=("/sbin/tc", "/lib64/ld-linux-x86-64.so.2"))
    files = guest_tools.collect(root, closure)
    assert files["lib/x86_64-linux-gnu/libbpf.so.1"] == b"bpf" and files["lib64/ld-linux-x86-64.so.2"] == b"ld"
    assert files["sbin/tc"] == b"tc" and files["lib"] is None and files["lib/x86_64-linux-gnu"] is None
    # A link that leaves the tree is refused, not followed onto the host.
    (root / "sbin/tc").unlink()
    (root / "sbin/tc").symlink_to("/sbin/tc")
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/tc").symlink_to("../../../../../../../sbin/tc")
    with pytest.raises(KernelError, match="no /sbin/tc"):
        guest_tools.collect(root, closure)


def test_newc_archive_marks_the_named_files_executable():
    data = guest_image.newc_archive({"sbin": None, "sbin/tc": b"\x7fELF", "lib": None, "lib/libc.so.6": b"\x7fELF"},
                                    executables={"sbin/tc"})

    def mode(name: bytes) -> int:
        at = data.index(name + b"\0") - 110
        return int(data[at + 14: at + 22], 16)

    assert mode(b"sbin/tc") & 0o777 == 0o755 and mode(b"lib/libc.so.6") & 0o777 == 0o644
