"""tracefs: event format files, ftrace instances, per-CPU raw ring-buffer pages.

Everything here is read from the running kernel: field layouts and symbolic
value tables come from each event's ``format`` file, the page layout from
``events/header_page``. The root directory is an argument, so the parsers are
tested on recorded copies of these files without root.

The fast path reads ``per_cpu/cpuN/trace_pipe_raw``: whole ring-buffer pages in
the kernel's binary layout, which :func:`walk_page` splits into events without
any text formatting on either side.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.errors import KernelError, MissingFeatureError, PrivilegeError

TRACEFS_ROOT = Path("/sys/kernel/tracing")


# ---------------------------------------------------------------- format files

@dataclass(frozen=True, kw_only=True, slots=True)
class FieldFormat:
    """One ``field:`` line of a format file."""

    name: str
    type: str
    offset: int
    """Byte offset of the field inside the event record."""
    size: int
    """Size in bytes (for ``__data_loc`` fields: the 4-byte locator)."""
    signed: bool
    data_loc: bool = False
    """A ``__data_loc`` field: the record holds (length << 16 | offset) of the data."""
    array: bool = False
    """A fixed-size array such as ``addr[6]`` (read as bytes)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EventFormat:
    """The layout of one tracepoint's records, parsed from its ``format`` file."""

    system: str
    name: str
    id: int
    """The value of ``common_type`` in records of this event."""
    fields: tuple[FieldFormat, ...]
    print_fmt: str

    def field(self, name: str) -> FieldFormat | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def symbols(self, field: str) -> dict[int, str]:
        """The ``__print_symbolic(REC->field, {v, "NAME"}, ...)`` table of ``field``.

        Entries whose value is not a plain integer (an enum constant the format
        file did not expand) are skipped.
        """
        return parse_symbolic(self.print_fmt, field)


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>-?\d+);")


def parse_format(text: str, *, system: str) -> EventFormat:
    """Parse the text of ``events/<system>/<event>/format``."""
    name = event_id = None
    fields: list[FieldFormat] = []
    print_fmt = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            event_id = int(line.split(":", 1)[1])
        elif line.startswith("field:"):
            m = _FIELD_RE.match(line)
            if not m:
                continue
            decl = m["decl"].strip()
            data_loc = decl.startswith("__data_loc ")
            if data_loc:
                decl = decl[len("__data_loc "):]
            fname = decl.split()[-1]
            ftype = decl[: -len(fname)].strip()
            array = "[" in fname
            fname = fname.split("[", 1)[0]  # "addr[6]" -> "addr"
            fields.append(FieldFormat(name=fname, type=ftype, offset=int(m["offset"]), size=int(m["size"]),
                                      signed=m["signed"] not in ("0",), data_loc=data_loc, array=array))
        elif line.startswith("print fmt:"):
            print_fmt = line[len("print fmt:"):].strip()
    if name is None or event_id is None:
        raise ValueError("not a tracepoint format file (no name: or ID: line)")
    return EventFormat(system=system, name=name, id=event_id, fields=tuple(fields), print_fmt=print_fmt)


_SYM_PAIR_RE = re.compile(r'\{\s*(-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*"([^"]*)"\s*\}')


def parse_symbolic(print_fmt: str, field: str) -> dict[int, str]:
    """Value -> name from ``__print_symbolic(REC->field, ...)`` in a print fmt."""
    start = print_fmt.find(f"__print_symbolic(REC->{field},")
    if start < 0:
        return {}
    # The table ends at the parenthesis that closes __print_symbolic.
    depth, end = 0, len(print_fmt)
    for i in range(start, len(print_fmt)):
        c = print_fmt[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    return {int(v, 0): n for v, n in _SYM_PAIR_RE.findall(print_fmt[start:end])}


@dataclass(frozen=True, kw_only=True, slots=True)
class PageLayout:
    """Where the ring-buffer page header ends and data begins (``events/header_page``)."""

    commit_offset: int
    commit_size: int
    data_offset: int
    data_size: int
    """Bytes of event data a page can hold."""


def parse_header_page(text: str) -> PageLayout:
    offs: dict[str, tuple[int, int]] = {}
    for m in _FIELD_RE.finditer(text):
        name = m["decl"].split()[-1]
        offs.setdefault(name, (int(m["offset"]), int(m["size"])))
    try:
        return PageLayout(commit_offset=offs["commit"][0], commit_size=offs["commit"][1],
                          data_offset=offs["data"][0], data_size=offs["data"][1])
    except KeyError as exc:
        raise ValueError(f"header_page lacks field {exc}") from None


# ----------------------------------------------------------------- raw pages

# Entry types of the compressed ring-buffer header (events/header_event).
_PADDING, _TIME_EXTEND, _TIME_STAMP = 29, 30, 31
_MISSED_EVENTS = 1 << 31
_MISSED_STORED = 1 << 30
_COMMIT_MASK = (1 << 27) - 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, kw_only=True, slots=True)
class PageInfo:
    timestamp_ns: int
    data_len: int
    missed: int
    """Events the kernel lost just before this page: -1 if it said 'some' without a count."""


def page_info(page: bytes, layout: PageLayout) -> PageInfo:
    ts = _U64.unpack_from(page, 0)[0]
    commit = int.from_bytes(page[layout.commit_offset:layout.commit_offset + layout.commit_size], "little")
    length = commit & _COMMIT_MASK
    missed = 0
    if commit & _MISSED_EVENTS:
        missed = -1
        if commit & _MISSED_STORED and layout.data_offset + length + 8 <= len(page):
            missed = _U64.unpack_from(page, layout.data_offset + length)[0]
    return PageInfo(timestamp_ns=ts, data_len=length, missed=missed)


def walk_page(page: bytes, layout: PageLayout) -> Iterator[tuple[int, int, int]]:
    """Yield (timestamp_ns, data_offset, data_len) of each event record in a page.

    The timestamp is in the instance's trace clock; ``page[data_offset:]``
    starts with the record's ``common_type``.
    """
    info = page_info(page, layout)
    ts = info.timestamp_ns
    pos = layout.data_offset
    end = pos + info.data_len
    u32 = _U32.unpack_from
    while pos + 4 <= end:
        head = u32(page, pos)[0]
        type_len = head & 0x1F
        delta = head >> 5
        if type_len == 0:
            size = u32(page, pos + 4)[0]
            ts += delta
            yield ts, pos + 8, size - 4
            pos += 4 + size
        elif type_len <= 28:
            ts += delta
            yield ts, pos + 4, type_len * 4
            pos += 4 + type_len * 4
        elif type_len == _TIME_EXTEND:
            ts += (u32(page, pos + 4)[0] << 27) | delta
            pos += 8
        elif type_len == _TIME_STAMP:
            # Absolute stamp of the low 59 bits; keep the upper bits we have.
            stamp = (u32(page, pos + 4)[0] << 27) | delta
            ts = (ts & ~((1 << 59) - 1)) | stamp
            pos += 8
        else:  # padding: delta 0 means "rest of page"
            if delta == 0:
                return
            pos += 4 + u32(page, pos + 4)[0]


# ------------------------------------------------------------------ tracefs

@dataclass(frozen=True, kw_only=True, slots=True)
class CpuStats:
    """``per_cpu/cpuN/stats`` of an instance."""

    cpu: int
    entries: int
    overrun: int
    """Events overwritten before being read (overwrite mode)."""
    commit_overrun: int
    dropped_events: int
    """Events refused because the buffer was full (no-overwrite mode)."""
    read_events: int

    @property
    def lost(self) -> int:
        return self.overrun + self.commit_overrun + self.dropped_events


def parse_cpu_stats(text: str, cpu: int) -> CpuStats:
    vals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if value.isdigit():
            vals[key.strip()] = int(value)
    return CpuStats(cpu=cpu, entries=vals.get("entries", 0), overrun=vals.get("overrun", 0),
                    commit_overrun=vals.get("commit overrun", 0), dropped_events=vals.get("dropped events", 0),
                    read_events=vals.get("read events", 0))


def _is_mounted(root: Path) -> bool:
    return (root / "events").is_dir() and (root / "instances").is_dir()


def open_tracefs(root: Path = TRACEFS_ROOT, *, mount: bool = True) -> Path:
    """Return the tracefs root, mounting it when it is not mounted and we are root."""
    if _is_mounted(root):
        return root
    hint = f"mount -t tracefs nodev {root}"
    if not mount:
        raise MissingFeatureError(f"cannot open tracefs at {root}: not mounted", hint=hint)
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot open tracefs at {root}: not mounted and not root", hint=f"sudo {hint}")
    # A mounted tracefs is ordinary system configuration (setup.sh mounts it
    # too); it is not undone, since other tracing users may rely on it.
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", str(root)], capture_output=True, text=True)
    if r.returncode != 0 or not _is_mounted(root):
        raise MissingFeatureError(f"cannot mount tracefs at {root}: {r.stderr.strip() or 'unknown error'}",
                                  hint="check that the kernel has CONFIG_TRACING")
    return root


def read_format(root: Path, system: str, event: str) -> EventFormat | None:
    """The format of ``system:event``, or None if this kernel lacks it."""
    try:
        text = (root / "events" / system / event / "format").read_text()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise PrivilegeError(f"cannot read {root}/events: permission denied", hint="run as root") from None
    return parse_format(text, system=system)


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        if exc.errno in (_errno.EACCES, _errno.EPERM):
            raise PrivilegeError(f"cannot write {path}: permission denied", hint="run as root") from None
        raise KernelError(f"cannot write {value.strip()!r} to {path}", errno=exc.errno) from None


class Instance:
    """One ftrace instance directory (``instances/<name>``). Creating and removing
    it is the caller's business (the Tracer journals it first)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.path = root / "instances" / name

    def create(self) -> None:
        try:
            self.path.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise KernelError(f"cannot create ftrace instance {self.path}", errno=exc.errno) from None

    def remove(self) -> None:
        """Disable everything and remove the directory; a no-op if it is gone."""
        if not self.path.exists():
            return
        try:
            _write(self.path / "tracing_on", "0")
            _write(self.path / "events" / "enable", "0")
        except Exception:  # noqa: BLE001 - rmdir below is what matters
            pass
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise KernelError(f"cannot remove ftrace instance {self.path}", errno=exc.errno) from None

    def set(self, relpath: str, value: str) -> None:
        _write(self.path / relpath, value)

    def get(self, relpath: str) -> str:
        return (self.path / relpath).read_text()

    def enable_event(self, system: str, event: str, filter_expr: str | None = None) -> None:
        d = self.path / "events" / system / event
        if filter_expr:
            _write(d / "filter", filter_expr)
        _write(d / "enable", "1")

    def enabled_events(self) -> list[str]:
        """``system:event`` of every enabled event (from ``set_event``)."""
        try:
            return [ln.strip() for ln in (self.path / "set_event").read_text().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def cpus(self) -> list[int]:
        return sorted(int(p.name[3:]) for p in (self.path / "per_cpu").glob("cpu*"))

    def cpu_stats(self, cpu: int) -> CpuStats:
        return parse_cpu_stats((self.path / "per_cpu" / f"cpu{cpu}" / "stats").read_text(), cpu)

    def open_raw(self, cpu: int) -> int:
        """A non-blocking fd on ``per_cpu/cpuN/trace_pipe_raw``."""
        return os.open(self.path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)


def list_instances(root: Path = TRACEFS_ROOT) -> list[str]:
    try:
        return sorted(p.name for p in (root / "instances").iterdir())
    except FileNotFoundError:
        return []
