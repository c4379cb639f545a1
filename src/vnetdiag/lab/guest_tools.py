"""Programs the guest runs beyond busybox: each binary with the shared
libraries and the loader it links, taken from the Debian packages that ship
them (downloaded and unpacked with the kernel, never installed).

Busybox's ``tc`` cannot add a qdisc, and the guest-side TX stall (seed 000: a
vNIC that stops sending) is a qdisc inside the guest, so the guest gets
iproute2's ``tc``. Which libraries it needs is read from the host's copy with
``ldd`` (the host runs the same Debian release: iproute2 is one of vnetdiag's
own dependencies), and which package ships each one from ``dpkg -S``; the
files themselves come from those packages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import KernelError
from vnetdiag.system import nsexec

TOOLS = ("/sbin/tc",)
"""Guest paths of the extra programs, as their packages ship them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Closure:
    files: tuple[str, ...]
    """Absolute guest paths: the programs, their libraries, the ELF loader."""
    packages: tuple[str, ...]
    """Debian packages that ship them (no architecture qualifier)."""
    executables: tuple[str, ...]
    """The files that get the executable bit (programs and the loader)."""


def _usr_variants(path: str) -> list[str]:
    """The path with and without /usr: where a package ships it and where a
    merged-/usr system (or ldd) finds it may differ."""
    return [path, path.removeprefix("/usr") if path.startswith("/usr/") else "/usr" + path]


def _package_of(path: str) -> str:
    for p in dict.fromkeys([*_usr_variants(path), *_usr_variants(os.path.realpath(path))]):
        r = nsexec.run(["dpkg", "-S", p], check=False)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.split(":", 1)[0].strip()
    raise KernelError(f"no Debian package ships {path} (needed by the guest image)",
                      hint="install iproute2 from Debian: the guest's tc is taken from its package")


def parse_ldd(text: str) -> tuple[list[str], str | None]:
    """(libraries by absolute path, the ELF loader) from ``ldd`` output."""
    libs: list[str] = []
    loader = None
    for line in text.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            loader = parts[0]
    return libs, loader


def resolve(tools: tuple[str, ...] = TOOLS) -> Closure:
    files: list[str] = []
    executables: list[str] = []
    for tool in tools:
        nsexec.need(Path(tool).name, "iproute2")
        libs, loader = parse_ldd(nsexec.run(["ldd", tool]).stdout)
        files += [tool, *libs, *([loader] if loader else [])]
        executables += [tool, *([loader] if loader else [])]
    files = list(dict.fromkeys(files))
    packages = sorted({_package_of(f) for f in files})
    return Closure(files=tuple(files), packages=tuple(packages), executables=tuple(dict.fromkeys(executables)))


def _inside(root: Path, path: str) -> Path:
    """``path`` in the unpacked tree ``root``, following symlinks inside the tree
    (and /usr-merged placements), never out of it."""
    for candidate in _usr_variants(path):
        p = root / candidate.lstrip("/")
        for _ in range(16):
            if not p.is_symlink():
                break
            target = os.readlink(p)
            p = root / target.lstrip("/") if target.startswith("/") else p.parent / target
        if p.is_file() and root.resolve() in p.resolve().parents:
            return p
    raise KernelError(f"the unpacked packages have no {path} (needed by the guest image)")


def collect(root: Path, closure: Closure) -> dict[str, bytes | None]:
    """The closure's files for the initramfs (relative paths, parent directories as None)."""
    out: dict[str, bytes | None] = {}
    for f in closure.files:
        rel = f.lstrip("/")
        parts = Path(rel).parts
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), None)
        out[rel] = _inside(root, f).read_bytes()
    return out
