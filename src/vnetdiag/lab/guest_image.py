"""The lab's guest image: a Debian kernel and a busybox initramfs, built from
Debian packages downloaded into a cache directory, never installed on the host.

    img = ensure()          # cached: a few ms; first build: download + unpack + cpio
    img.kernel, img.initramfs

``apt-get download`` fetches ``linux-image-<version>-amd64`` (the package the
``linux-image-amd64`` metapackage points at) and ``busybox-static`` into the
cache; ``dpkg-deb -x`` unpacks them there; ``depmod -b`` computes the module
dependencies of *that* kernel (the package ships no modules.dep), so the
initramfs carries exactly the modules virtio-net needs, in load order. The
unpacked trees are deleted afterwards; only vmlinuz and the initramfs stay.

The image is keyed by content: the two package versions, the module list and
the init script. A new kernel in the archive or an edited init gives a new key
and a new directory; an old one is left for whoever still uses it.

The guest's /init (below) reads its NICs and routes from the kernel command
line (``vnd.if=MAC@ADDR/PLEN``, ``vnd.route=DEST@GATEWAY``), so one image
serves every VM of every lab.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import KernelError, MissingFeatureError
from vnetdiag.lab import guest_tools
from vnetdiag.system import nsexec

KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# What the guest loads: the virtio PCI transport and the NIC driver, tbf
# for the guest-side TX stall, and 9p over virtio for the host's files (the
# probe server runs from them); the dependencies (virtio, virtio_ring,
# failover, netfs, 9pnet, ...) come from depmod.
MODULES = ("virtio_pci", "virtio_net", "sch_tbf", "9pnet_virtio", "9p")
IMAGE_FORMAT = 2
"""Bumped when the layout of the initramfs changes in a way the key does not see."""

READY_LINE = "vnetdiag-guest: ready"
"""The console line /init prints once every NIC is configured and the responders run."""

ECHO_TCP_PORT = 7

SERVE_LINE = "vnetdiag-guest: serve"
"""Printed with the port once vnetdiag's probe server listens in the guest."""
SERVE_FAILED = "vnetdiag-guest: serve failed:"

TX_STALL_ACK = "vnetdiag-guest: tx-stall"
"""Console lines the guest answers a TX stall request with: "<this> MAC on|off"."""

# Busybox ash. Each vnd.if names a NIC by MAC (the lab chose it), so the
# order in which the kernel probes the virtio devices does not matter. The
# console (ttyS0) is also the control channel: "poweroff" powers off;
# "tx-stall MAC" puts tbf at 8 bit/s with a 1-byte bucket on that NIC, so
# not one frame leaves (the guest's qdisc drops them: seed 000's vNIC that
# stopped sending) and "tx-resume MAC" removes it, each acknowledged.
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m || echo "vnetdiag-guest: insmod $m failed"; done
hostname "$(sed -n 's/.*vnd\.name=\([^ ]*\).*/\1/p' /proc/cmdline)"
ip link set lo up
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null
want=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in vnd.if=*) want=$((want + 1));; esac
done
# virtio devices are probed asynchronously: wait (bounded) until every NIC exists.
i=0
while [ "$(ls /sys/class/net | grep -vc '^lo$')" -lt "$want" ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
nic_of() {
  for d in /sys/class/net/*; do
    [ "$(cat $d/address)" = "$1" ] && echo ${d##*/}
  done
}
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vnd.if=*)
      spec=${arg#vnd.if=}; mac=${spec%%@*}; addr=${spec#*@}
      dev=$(nic_of "$mac")
      if [ -z "$dev" ]; then echo "vnetdiag-guest: no NIC with MAC $mac"; continue; fi
      [ "$addr" != "$spec" ] && [ -n "$addr" ] && ip addr add "$addr" dev "$dev"
      ip link set "$dev" up
      echo "vnetdiag-guest: $dev $mac $addr"
      ;;
  esac
done
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vnd.route=*) r=${arg#vnd.route=}; ip route add "${r%%@*}" via "${r#*@}" && echo "vnetdiag-guest: route $r";;
  esac
done
# TCP echo on port 7 (nc -ll forks one cat per connection); ICMP echo is the kernel's.
nc -ll -p @ECHO_PORT@ -e /bin/cat &
# vnd.serve=PORT@PYTHON: vnetdiag's probe server, run by the host's Python from
# the host's files, shared read-only over virtio-9p (tag vndhost). Mounts on
# top of the 9p tree do not show through it, so the server's root is a tmpfs
# with every top-level directory of the host bound in (/tmp and /run too: the
# Python may live there, as a CI clone in /tmp does), its symlinks (/bin ->
# usr/bin) copied, the guest's own /proc, /sys and /dev, and a writable tmpfs
# at /dev/shm for TMPDIR. Ready once it listens.
serve=$(sed -n 's/.*vnd\.serve=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$serve" ]; then
  port=${serve%%@*}; py=${serve#*@}; r=/srv
  mkdir -p /host $r
  if mount -t 9p -o trans=virtio,version=9p2000.L,ro vndhost /host && mount -t tmpfs tmpfs $r; then
    for d in /host/*; do
      n=${d##*/}
      case "$n" in proc|sys|dev) mkdir -p "$r/$n"; continue;; esac
      if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$r/$n"
      elif [ -d "$d" ]; then mkdir -p "$r/$n" && mount --bind "$d" "$r/$n"; fi
    done
    mount -t proc proc $r/proc; mount -t sysfs sysfs $r/sys; mount -t devtmpfs devtmpfs $r/dev
    mkdir -p $r/dev/shm; mount -t tmpfs tmpfs $r/dev/shm
    TMPDIR=/dev/shm PYTHONDONTWRITEBYTECODE=1 chroot $r "$py" -m vnetdiag.cli.main serve --listen "0.0.0.0:$port" >/tmp/serve.log 2>&1 &
    i=0
    while ! netstat -ltn 2>/dev/null | grep -q ":$port " && [ $i -lt 1200 ]; do usleep 50000; i=$((i + 1)); done
    if netstat -ltn 2>/dev/null | grep -q ":$port "; then echo "@SERVE@ $port"
    else echo "@SERVE_FAILED@ $(tail -c 200 /tmp/serve.log | tr '\n' ' ')"; fi
  else
    echo "@SERVE_FAILED@ the host's files (9p tag vndhost) cannot be mounted"
  fi
fi
echo "@READY@"
while read -r line; do
  case "$line" in
    poweroff*) echo "vnetdiag-guest: powering off"; sync; poweroff -f;;
    tx-stall\ *) set -- $line; dev=$(nic_of "$2")
      /sbin/tc qdisc replace dev "$dev" root tbf rate 8bit burst 1 limit 1 && echo "@ACK@ $2 on";;
    tx-resume\ *) set -- $line; dev=$(nic_of "$2")
      /sbin/tc qdisc del dev "$dev" root 2>/dev/null; echo "@ACK@ $2 off";;
    *) echo "vnetdiag-guest: unknown request '$line'";;
  esac
done < /dev/console
poweroff -f
""".replace("@ECHO_PORT@", str(ECHO_TCP_PORT)).replace("@READY@", READY_LINE).replace("@ACK@", TX_STALL_ACK)\
    .replace("@SERVE_FAILED@", SERVE_FAILED).replace("@SERVE@", SERVE_LINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class GuestImage:
    kernel: Path
    initramfs: Path
    kernel_version: str
    """The guest kernel's release, e.g. "6.1.0-57-amd64"."""
    key: str
    """Content key: the cache subdirectory's name."""
    packages: dict
    """Debian package name -> version the image was built from."""
    built_s: float
    """Seconds this call spent building (0.0 when the cache was hit)."""


def cache_dir() -> Path:
    return Path(os.environ.get("VNETDIAG_CACHE_DIR", "/var/cache/vnetdiag")) / "guest"


def _apt_candidate(package: str) -> str:
    out = nsexec.run(["apt-cache", "policy", package]).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise MissingFeatureError(f"apt knows no version of {package}",
                              hint="apt-get update (the guest image is built from Debian packages)")


def _kernel_package() -> str:
    """The versioned kernel package the metapackage depends on (linux-image-6.1.0-57-amd64)."""
    out = nsexec.run(["apt-cache", "depends", KERNEL_METAPACKAGE]).stdout
    for line in out.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-") and name[12:13].isdigit():
            return name
    raise MissingFeatureError(f"cannot tell which kernel {KERNEL_METAPACKAGE} installs",
                              hint="apt-get update")


def _apt_stamp() -> list[float]:
    """When apt's view of the archive last changed (apt-get update rewrites these)."""
    out = []
    for path in ("/var/lib/apt/lists", "/var/cache/apt/pkgcache.bin", "/etc/apt/sources.list.d"):
        try:
            out.append(os.stat(path).st_mtime)
        except OSError:
            out.append(0.0)
    return out


def _resolve_packages(root: Path) -> tuple[str, dict, guest_tools.Closure]:
    """(kernel package, {package: version}, the extra tools' files); apt-cache
    takes seconds under load, so the answer is kept until apt's lists change."""
    memo = root / "resolved.json"
    stamp = [*_apt_stamp(), IMAGE_FORMAT]
    try:
        data = json.loads(memo.read_text())
        if data["stamp"] == stamp:
            return data["kernel_package"], data["packages"], guest_tools.Closure(**data["tools"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    kpkg = _kernel_package()
    tools = guest_tools.resolve()
    packages = {p: _apt_candidate(p) for p in (kpkg, BUSYBOX_PACKAGE, *tools.packages)}
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "kernel_package": kpkg, "packages": packages,
                               "tools": {"files": tools.files, "packages": tools.packages,
                                         "executables": tools.executables}}))
    os.replace(tmp, memo)
    return kpkg, packages, tools


def content_key(packages: dict, modules=MODULES, init=INIT_SCRIPT, tools: tuple[str, ...] = ()) -> str:
    blob = json.dumps({"format": IMAGE_FORMAT, "packages": packages, "modules": list(modules), "init": init,
                       "tools": list(tools)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure(progress: Callable[[str], None] | None = None) -> GuestImage:
    """The guest image, built on first use; concurrent callers wait for one build."""
    say = progress or (lambda _m: None)
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("depmod", "kmod")):
        nsexec.need(tool, package)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    kpkg, packages, tools = _resolve_packages(root)
    key = content_key(packages, tools=tools.files)
    out = root / key
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = out / "image.json"
        if meta.exists():
            data = json.loads(meta.read_text())
            return GuestImage(kernel=out / "vmlinuz", initramfs=out / "initramfs.gz",
                              kernel_version=data["kernel_version"], key=key, packages=data["packages"], built_s=0.0)
        t0 = time.monotonic()
        work = root / f".build-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            version = _build(work, packages, kpkg, tools, say)
            out.mkdir(exist_ok=True)
            os.replace(work / "vmlinuz", out / "vmlinuz")
            os.replace(work / "initramfs.gz", out / "initramfs.gz")
            (out / "image.json").write_text(json.dumps({"kernel_version": version, "packages": packages,
                                                        "modules": list(MODULES)}, indent=2))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return GuestImage(kernel=out / "vmlinuz", initramfs=out / "initramfs.gz", kernel_version=version,
                          key=key, packages=packages, built_s=time.monotonic() - t0)


def _build(work: Path, packages: dict, kpkg: str, tools: guest_tools.Closure, say) -> str:
    say(f"guest image: apt-get download {' '.join(f'{p}={v}' for p, v in packages.items())}")
    nsexec.run(["sh", "-c", 'cd "$1" && shift && exec apt-get download -q "$@"', "sh", str(work),
                *(f"{p}={v}" for p, v in packages.items())], timeout_s=600)
    debs = {p: next(work.glob(f"{p}_*.deb")) for p in packages}
    kroot, broot = work / "kernel", work / "busybox"
    say("guest image: dpkg-deb -x (kernel, busybox)")
    nsexec.run(["dpkg-deb", "-x", str(debs[kpkg]), str(kroot)], timeout_s=600)
    nsexec.run(["dpkg-deb", "-x", str(debs[BUSYBOX_PACKAGE]), str(broot)])
    troot = work / "tools"
    say(f"guest image: dpkg-deb -x ({', '.join(tools.packages)})")
    for p in tools.packages:
        nsexec.run(["dpkg-deb", "-x", str(debs[p]), str(troot)])
    vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise KernelError(f"{debs[kpkg].name} has no /boot/vmlinuz-*")
    version = vmlinuz[0].name.removeprefix("vmlinuz-")
    nsexec.run(["depmod", "-b", str(kroot), version])
    order = module_order(kroot / "lib/modules" / version / "modules.dep", MODULES)
    files: dict[str, bytes | None] = {"bin": None, "lib": None, "lib/modules": None, "dev": None,
                                      "proc": None, "sys": None}
    for rel in order:
        files[f"lib/modules/{Path(rel).name}"] = (kroot / "lib/modules" / version / rel).read_bytes()
    files["lib/modules/load-order"] = "".join(Path(r).name + "\n" for r in order).encode()
    files["bin/busybox"] = (broot / "bin/busybox").read_bytes()
    files.update(guest_tools.collect(troot, tools))
    files["init"] = INIT_SCRIPT.encode()
    say(f"guest image: initramfs with {len(order)} modules ({', '.join(Path(r).stem for r in order)})")
    os.replace(vmlinuz[0], work / "vmlinuz")
    executables = {"init", "bin/busybox", *(f.lstrip("/") for f in tools.executables)}
    (work / "initramfs.gz").write_bytes(gzip.compress(newc_archive(files, executables), compresslevel=6))
    return version


def module_order(modules_dep: Path, wanted) -> list[str]:
    """Module paths (relative to lib/modules/VERSION) to insmod, dependencies
    first, from depmod's modules.dep ("path: dep1 dep2", deps in load-last-first order)."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".")[0].replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for d in deps.get(path, []):
            visit(d)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise KernelError(f"the guest kernel has no module {name} (built in or missing)")
        visit(by_name[name])
    return order


def newc_archive(files: dict[str, bytes | None], executables=frozenset({"init", "bin/busybox"})) -> bytes:
    """A cpio "newc" archive (what the kernel unpacks as an initramfs): None is a
    directory, bytes a file; the names in ``executables`` are made executable."""
    buf = io.BytesIO()

    def entry(name: str, mode: int, data: bytes, ino: int) -> None:
        header = (f"070701{ino:08x}{mode:08x}{0:08x}{0:08x}{1:08x}{0:08x}{len(data):08x}"
                  f"{0:08x}{0:08x}{0:08x}{0:08x}{len(name) + 1:08x}{0:08x}")
        buf.write(header.encode() + name.encode() + b"\0")
        buf.write(b"\0" * (-buf.tell() % 4))
        buf.write(data)
        buf.write(b"\0" * (-buf.tell() % 4))

    for ino, (name, data) in enumerate(sorted(files.items()), start=1):
        if data is None:
            entry(name, stat.S_IFDIR | 0o755, b"", ino)
        else:
            exe = name in executables
            entry(name, stat.S_IFREG | (0o755 if exe else 0o644), data, ino)
    entry("TRAILER!!!", 0, b"", 0)
    return buf.getvalue()


def main() -> int:  # pragma: no cover - `python -m vnetdiag.lab.guest_image` builds and prints
    img = ensure(progress=print)
    print(json.dumps({"kernel": str(img.kernel), "initramfs": str(img.initramfs), "key": img.key,
                      "kernel_version": img.kernel_version, "packages": img.packages,
                      "built_s": round(img.built_s, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
