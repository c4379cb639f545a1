"""Trace recordings: raw ring-buffer pages plus everything needed to decode them.

File layout (gzip-compressed stream)::

    b"VNETDIAG-TRACE\\n"
    chunks: 4-byte tag, u32 little-endian length, payload
      b"META"  JSON: schema, kernel release, event set, format files, header_page,
               device map, start time
      b"PAGE"  u16 cpu + one raw page of per_cpu/cpuN/trace_pipe_raw
      b"DROP"  JSON (version 2, optional): the eBPF drop tracer's result for
               the same window (model.drops.DropTraceResult: kernel counts per
               namespace, device and reason; per-packet records with flows)
      b"END "  JSON: duration, completeness, symbols {address: function+offset}

A file without its END chunk was cut short: it is refused as truncated. The
schema is ``vnetdiag.trace/2`` (version 1 had no DROP chunk); readers accept
every version in READABLE.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import asdict
from pathlib import Path

from vnetdiag.errors import BadInputError
from vnetdiag.model.drops import DropTraceResult
from vnetdiag.model.plain import from_plain, to_plain
from vnetdiag.model.tracing import Completeness, DeviceRef
from vnetdiag.system.tracefs import EventFormat, PageLayout, parse_format, parse_header_page

SCHEMA = "vnetdiag.trace/2"
READABLE = ("vnetdiag.trace/1", "vnetdiag.trace/2")
MAGIC = b"VNETDIAG-TRACE\n"
_CHUNK = struct.Struct("<4sI")
_CPU = struct.Struct("<H")


class TraceWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._f = gzip.open(self.path, "wb", compresslevel=1)
        except OSError as exc:
            raise BadInputError(f"cannot write {self.path}: {exc.strerror}", hint="choose a writable path") from None
        self._f.write(MAGIC)

    def _chunk(self, tag: bytes, payload: bytes) -> None:
        self._f.write(_CHUNK.pack(tag, len(payload)))
        self._f.write(payload)

    def meta(self, meta: dict) -> None:
        self._chunk(b"META", json.dumps({"schema": SCHEMA, **meta}).encode())

    def page(self, cpu: int, page: bytes) -> None:
        self._chunk(b"PAGE", _CPU.pack(cpu) + page)

    def drops(self, result: DropTraceResult) -> None:
        self._chunk(b"DROP", json.dumps(to_plain(result)).encode())

    def end(self, end: dict) -> None:
        self._chunk(b"END ", json.dumps(end).encode())

    def close(self) -> None:
        self._f.close()


class Recording:
    """A recording read back: formats, device map, completeness and pages."""

    def __init__(self, meta: dict, end: dict, pages: list[tuple[int, bytes]], drops: dict | None = None) -> None:
        self.meta = meta
        self.drops: DropTraceResult | None = from_plain(DropTraceResult, drops) if drops is not None else None
        """The eBPF drop tracer's result for the window (version 2 files that have one)."""
        self.end = end
        self.pages = pages
        self.formats: list[EventFormat] = [parse_format(text, system=key.split(":", 1)[0])
                                           for key, text in meta["formats"].items()]
        self.layout: PageLayout = parse_header_page(meta["header_page"])
        self.devmap = {name: tuple(DeviceRef(**r) for r in refs) for name, refs in meta.get("devices", {}).items()}
        self.symbols = {int(k, 16): v for k, v in end.get("symbols", {}).items()}
        c = end.get("completeness", {})
        self.completeness = Completeness(events_read=c.get("events_read", 0), events_lost=c.get("events_lost", 0),
                                         lost_by_cpu={int(k): v for k, v in c.get("lost_by_cpu", {}).items()},
                                         missing_events=tuple(c.get("missing_events", ())))
        self.duration_s = float(end.get("duration_s", 0.0))

    def symbolize(self, addr: int) -> str:
        return self.symbols.get(addr, f"{addr:#x}")


def completeness_json(c: Completeness) -> dict:
    d = asdict(c)
    d["lost_by_cpu"] = {str(k): v for k, v in c.lost_by_cpu.items()}
    return d


def read(path: Path) -> Recording:
    """Read a recording; a corrupt, truncated or foreign file is a BadInputError."""
    path = Path(path)
    bad = f"{path} is not a readable vnetdiag trace recording"
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file", hint="give a file written by `vnetdiag trace record`") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(f"{bad}: {exc}", hint="the file is corrupt or truncated; record it again") from None
    if not data.startswith(MAGIC):
        raise BadInputError(f"{bad}: wrong magic", hint="give a file written by `vnetdiag trace record`")
    pos, meta, end, pages, drops = len(MAGIC), None, None, [], None
    while pos + _CHUNK.size <= len(data):
        tag, length = _CHUNK.unpack_from(data, pos)
        pos += _CHUNK.size
        payload = data[pos:pos + length]
        if len(payload) != length:
            break
        pos += length
        try:
            if tag == b"META":
                meta = json.loads(payload)
            elif tag == b"PAGE":
                pages.append((_CPU.unpack_from(payload)[0], payload[_CPU.size:]))
            elif tag == b"DROP":
                drops = json.loads(payload)
            elif tag == b"END ":
                end = json.loads(payload)
        except ValueError:
            raise BadInputError(f"{bad}: corrupt {tag.decode().strip()} chunk", hint="record it again") from None
    if meta is None or meta.get("schema") not in READABLE:
        raise BadInputError(f"{bad}: unknown schema {meta and meta.get('schema')!r}",
                            hint=f"this vnetdiag reads {', '.join(READABLE)}")
    if end is None:
        raise BadInputError(f"{bad}: truncated (no END chunk)", hint="the recording was cut short; record it again")
    try:
        return Recording(meta, end, pages, drops)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{bad}: malformed header ({exc})", hint="record it again") from None
