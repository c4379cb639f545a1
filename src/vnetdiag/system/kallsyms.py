"""Kernel symbols from /proc/kallsyms: turn a code address into ``function+offset``.

Only text symbols (types t/T) are kept. Symbolization needs root (without it
the kernel shows every address as zero, which :func:`load` reports).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import PrivilegeError

KALLSYMS = Path("/proc/kallsyms")


@dataclass(frozen=True, kw_only=True, slots=True)
class Symbol:
    name: str
    """Function name; ``name [module]`` for symbols of a loadable module."""
    offset: int
    """Bytes from the start of the function."""
    size: int | None
    """Distance to the next text symbol, or None for the last one."""

    def __str__(self) -> str:
        return f"{self.name}+{self.offset:#x}" + (f"/{self.size:#x}" if self.size else "")


class Kallsyms:
    """A sorted table of text symbols, built from the text of /proc/kallsyms."""

    def __init__(self, text: str) -> None:
        entries: list[tuple[int, str]] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[1] not in ("t", "T"):
                continue
            addr = int(parts[0], 16)
            name = parts[2] + (f" {parts[3]}" if len(parts) > 3 else "")
            entries.append((addr, name))
        entries.sort()
        self._addrs = [a for a, _ in entries]
        self._names = [n for _, n in entries]
        self._cache: dict[int, Symbol | None] = {}

    def __len__(self) -> int:
        return len(self._addrs)

    @property
    def hidden(self) -> bool:
        """True when the kernel zeroed every address (reader not privileged)."""
        return bool(self._addrs) and self._addrs[-1] == 0

    def lookup(self, addr: int) -> Symbol | None:
        """The symbol containing ``addr``, or None when it is outside every symbol."""
        if addr in self._cache:
            return self._cache[addr]
        i = bisect_right(self._addrs, addr) - 1
        sym = None
        if i >= 0 and self._addrs[i] != 0:
            size = self._addrs[i + 1] - self._addrs[i] if i + 1 < len(self._addrs) else None
            off = addr - self._addrs[i]
            if size is None or off < size:
                sym = Symbol(name=self._names[i], offset=off, size=size)
        self._cache[addr] = sym
        return sym

    def symbolize(self, addr: int) -> str:
        """``function+0xoff/0xsize`` like the kernel's %pS, or the hex address."""
        sym = self.lookup(addr)
        return str(sym) if sym else f"{addr:#x}"

    def address_of(self, name: str) -> int | None:
        """Start address of the text symbol ``name`` (first match), or None."""
        try:
            return self._addrs[self._names.index(name)]
        except ValueError:
            return None

    def function(self, addr: int) -> str:
        """Just the function name (what drops are grouped by), or the hex address."""
        sym = self.lookup(addr)
        return sym.name if sym else f"{addr:#x}"


def load(path: Path = KALLSYMS) -> Kallsyms:
    table = Kallsyms(path.read_text())
    if table.hidden:
        raise PrivilegeError(f"cannot symbolize kernel addresses: {path} shows zeros", hint="run as root")
    return table
