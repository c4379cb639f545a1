"""Read pcap and pcapng files (optionally gzip-compressed) in batches of packets.

The file is read in chunks of ``chunk_bytes``; one Python step per record finds
where the record starts (a length field must be read before the next record can
be found), everything else is gathered with numpy over the whole batch. Memory
is bounded by the chunk size: a batch holds the chunk's bytes and a few arrays.

Damaged input never raises past this module except as BadInputError for a file
that is not a capture at all: a truncated last record, a corrupt record length
or an unknown interface are counted in ``skipped`` and described in ``warnings``.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vnetdiag.collect import pcap_chain
from vnetdiag.collect.pcap_chain import MAX_BLOCK, u32view as _u32view
from vnetdiag.collect.pcap_chain import chain as _chain
from vnetdiag.collect.pcap_chain import chain_ng as _chain_ng
from vnetdiag.errors import BadInputError

PAD = 512
"""Zero bytes appended to every batch buffer so header gathers past the end of a
short packet read zeros instead of failing (validity is checked against caplen)."""
MAX_CAPLEN = 262_144
"""Largest packet libpcap and Wireshark accept (unless the file's snaplen says more)."""
_SHOWN_BLOCK_TYPES = 5
"""Unknown pcapng block types named in the warning (the rest are counted)."""

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microsecond, little endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanosecond
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_EPB, _SPB, _OPB, _IDB, _SHB = 6, 3, 2, 1, 0x0A0D0D0A


@dataclass(frozen=True, kw_only=True)
class Batch:
    """Packets of one chunk. ``buf`` holds the chunk bytes plus PAD zeros; the
    per-packet arrays index into it."""

    buf: np.ndarray
    data_off: np.ndarray
    """int64 offset of each packet's first byte in buf."""
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    """int64 nanoseconds since the epoch."""
    linktype: np.ndarray
    """int32 LINKTYPE_* of the interface each packet was captured on."""
    first_frame: int
    """1-based frame number of the first packet of the batch."""

    def __len__(self) -> int:
        return len(self.data_off)


@dataclass(kw_only=True)
class _Iface:
    linktype: int
    snaplen: int
    ts_mul: int = 1000
    """Nanoseconds = units * ts_mul // ts_div (exact for decimal resolutions)."""
    ts_div: int = 1
    ts_offset_s: int = 0

    @property
    def resolution_ns(self) -> float:
        return self.ts_mul / self.ts_div


def _open(path: Path | bytes) -> tuple[object, object, bool]:
    """(reader, raw file, compressed) for a plain or gzip file (or bytes in memory)."""
    if isinstance(path, (bytes, bytearray)):
        raw = io.BytesIO(path)
        if path[:2] == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw, True
        return raw, raw, False
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise BadInputError(f"cannot open {path}: no such file", hint="give the path of a pcap or pcapng file") from None
    except IsADirectoryError:
        raise BadInputError(f"cannot open {path}: is a directory", hint="give the path of a pcap or pcapng file") from None
    except PermissionError:
        raise BadInputError(f"cannot open {path}: permission denied", hint="check the file's permissions") from None
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, True
    return raw, raw, False


def _u16view(buf: np.ndarray, endian: str) -> np.ndarray:
    return np.ndarray(shape=(max(len(buf) - 1, 0),), dtype=endian + "u2", buffer=buf, strides=(1,))


@dataclass
class PcapReader:
    """Iterate over ``Batch``es of a capture file; read ``warnings``/``skipped`` after.

    ``progress(done_bytes, total_bytes)`` is called once per chunk (bytes of the
    file on disk, so it works for gzip too)."""

    path: Path
    chunk_bytes: int = 8 << 20
    progress: Callable[[int, int], None] | None = None
    format: str = ""
    compressed: bool = False
    packets: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    interfaces: list[_Iface] = field(default_factory=list)
    unknown_blocks: dict[int, int] = field(default_factory=dict)
    _last_ts: int = 0
    """Time of the last packet read (for pcapng simple packet blocks, which have none)."""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (bytes, bytearray)):
            self.path = Path(self.path)

    @property
    def name(self) -> str:
        return "<bytes>" if isinstance(self.path, (bytes, bytearray)) else str(self.path)

    # -- plumbing -----------------------------------------------------------
    def _read(self, f, n: int) -> tuple[bytes, Exception | None]:
        """Up to n bytes; for gzip, piecewise so damage keeps what came before it."""
        if not self.compressed:
            return f.read(n), None
        parts, got = [], 0
        while got < n:
            try:
                b = f.read1(n - got)
            except (OSError, EOFError, zlib.error) as exc:
                return b"".join(parts), exc
            if not b:
                break
            parts.append(b)
            got += len(b)
        return b"".join(parts), None

    def _chunks(self, f, raw, carry_of: Callable[[], bytes]) -> Iterator[memoryview]:
        """Chunks of the file, each preceded by the unfinished tail of the previous
        one (``carry_of()``), in one reused buffer: a chunk is valid until the
        next is requested (so is every Batch made from it)."""
        total = os.fstat(raw.fileno()).st_size if not isinstance(raw, io.BytesIO) else len(raw.getbuffer())
        buf = bytearray()
        while True:
            carry = carry_of()
            lc = len(carry)
            if len(buf) < lc + self.chunk_bytes + PAD:
                buf = bytearray(lc + self.chunk_bytes + PAD)
            buf[:lc] = carry
            error = None
            if self.compressed:
                data, error = self._read(f, self.chunk_bytes)
                got = len(data)
                buf[lc:lc + got] = data
            else:
                got = f.readinto(memoryview(buf)[lc:lc + self.chunk_bytes]) or 0
            if got:
                if self.progress:
                    self.progress(raw.tell(), total)
                buf[lc + got:lc + got + PAD] = bytes(PAD)
                yield memoryview(buf)[:lc + got]
            if error is not None:
                self.warnings.append(f"compressed data is damaged ({error}); read up to the damage")
                return
            if not got:
                return

    def __iter__(self) -> Iterator[Batch]:
        f, raw, self.compressed = _open(self.path)
        try:
            try:
                head = f.read(4)
            except (OSError, EOFError, zlib.error) as exc:
                raise BadInputError(f"{self.name}: damaged gzip data ({exc})",
                                    hint="decompress it with gunzip to see what is wrong") from None
            if head in PCAP_MAGIC:
                self.format = "pcap"
                yield from self._pcap(f, raw, head)
            elif head == PCAPNG_SHB:
                self.format = "pcapng"
                yield from self._pcapng(f, raw, head)
            else:
                what = "an empty file" if not head else "not a pcap or pcapng file"
                raise BadInputError(f"{self.name}: {what} (starts with {head.hex() or 'nothing'})",
                                    hint="give a capture written by tcpdump, dumpcap or tshark (-w FILE)")
        finally:
            f.close()
            raw.close()

    @staticmethod
    def _padded(data: memoryview) -> np.ndarray:
        """The chunk as a numpy array including the PAD zero bytes that follow it
        in the reused buffer (no copy)."""
        return np.frombuffer(data.obj, dtype=np.uint8, count=len(data) + PAD)

    def _emit(self, buf: np.ndarray, off, cap, wire, ts, lt) -> Batch:
        batch = Batch(buf=buf, data_off=off, caplen=cap, wirelen=wire, ts_ns=ts, linktype=lt,
                      first_frame=self.packets + 1)
        self.packets += len(off)
        return batch

    # -- pcap ---------------------------------------------------------------
    def _pcap(self, f, raw, magic: bytes) -> Iterator[Batch]:
        endian, ts_mul = PCAP_MAGIC[magic]
        rest = f.read(20)
        if len(rest) < 20:
            raise BadInputError(f"{self.name}: pcap file header is truncated ({4 + len(rest)} of 24 bytes)",
                                hint="the file was cut off; recapture it")
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "HHiIII", rest)
        linktype = network & 0x0FFFFFFF
        self.interfaces.append(_Iface(linktype=linktype, snaplen=snaplen, ts_mul=ts_mul))
        limit = max(snaplen, MAX_CAPLEN)
        unpack = struct.Struct(endian + "I").unpack_from
        carry = b""
        stopped = False
        for buf in self._chunks(f, raw, lambda: carry):
            n = len(buf)
            fast = _chain(buf, endian, limit)
            if fast is not None:
                starts, pos = fast
            else:
                pos = 0
                starts = []
                push = starts.append
                while pos + 16 <= n:
                    caplen = unpack(buf, pos + 8)[0]
                    if caplen > limit:
                        self.skipped += 1
                        self.warnings.append(
                            f"corrupt pcap record header at packet {self.packets + len(starts) + 1} "
                            f"(caplen {caplen} > {limit}): stopped reading, the rest of the file is skipped")
                        stopped = True
                        break
                    end = pos + 16 + caplen
                    if end > n:
                        break
                    push(pos)
                    pos = end
            carry = b"" if stopped else bytes(buf[pos:])
            if len(starts):
                yield self._pcap_batch(buf, starts, endian, ts_mul, linktype)
            if stopped:
                return
        if carry:
            self.skipped += 1
            self.warnings.append(f"file truncated: last record incomplete ({len(carry)} bytes), 1 packet skipped")

    def _pcap_batch(self, buf: bytes, starts, endian: str, ts_mul: int, linktype: int) -> Batch:
        s = np.asarray(starts, dtype=np.int64)
        arr = self._padded(buf)
        u32 = _u32view(arr, endian)
        sec = u32[s].astype(np.int64)
        frac = u32[s + 4].astype(np.int64)
        cap = u32[s + 8].astype(np.int64)
        wire = np.maximum(u32[s + 12].astype(np.int64), cap)
        ts = sec * 1_000_000_000 + frac * ts_mul
        lt = np.full(len(s), linktype, dtype=np.int32)
        return self._emit(arr, s + 16, cap, wire, ts, lt)

    # -- pcapng -------------------------------------------------------------
    def _pcapng(self, f, raw, magic: bytes) -> Iterator[Batch]:
        carry = magic
        endian = "<"
        section_base = 0
        for buf in self._chunks(f, raw, lambda: carry):
            pos = 0
            while True:
                pos, starts, kinds, stop, endian, section_base = self._walk(buf, pos, endian, section_base)
                if len(starts):
                    yield self._pcapng_batch(buf, starts, kinds, endian, section_base)
                if stop == "more":
                    continue  # a section header: new byte order, flush and go on
                break
            if stop == "corrupt":
                return
            carry = bytes(buf[pos:])
        if carry:
            self.skipped += 1
            self.warnings.append(f"file truncated: last block incomplete ({len(carry)} bytes), 1 block skipped")
        if self.unknown_blocks:
            # A damaged file can hold thousands of "types": name the commonest only,
            # so the warning stays one readable line.
            common = sorted(self.unknown_blocks.items(), key=lambda kv: (-kv[1], kv[0]))
            kinds = ", ".join(f"0x{k:08x} x{v}" for k, v in common[:_SHOWN_BLOCK_TYPES])
            rest = common[_SHOWN_BLOCK_TYPES:]
            if rest:
                kinds += f", {len(rest)} more types ({sum(v for _k, v in rest)} blocks)"
            self.warnings.append(f"skipped pcapng blocks of unknown type: {kinds}")

    def _walk(self, buf: bytes, pos: int, endian: str, section_base: int):
        """Collect packet block offsets from pos until the chunk ends, a section
        header changes the byte order (stop="more"), or a length is corrupt.
        Runs of enhanced packet blocks are found vectorised (``_chain_ng``)."""
        n = len(buf)
        hdr = struct.Struct(endian + "II").unpack_from
        starts: list[int] = []
        kinds: list[int] = []
        pieces: list[np.ndarray] = []
        kpieces: list[np.ndarray] = []
        tries = 0

        def done(at: int, stop: str, end_: str, base: int):
            if starts:
                pieces.append(np.asarray(starts, dtype=np.int64))
                kpieces.append(np.asarray(kinds, dtype=np.int64))
            s_ = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
            k_ = np.concatenate(kpieces) if kpieces else np.zeros(0, dtype=np.int64)
            return at, s_, k_, stop, end_, base

        while pos + 12 <= n:
            btype, blen = hdr(buf, pos)
            if btype == _EPB and 32 <= blen <= MAX_BLOCK and not blen & 3:
                if pos + blen > n:
                    break
                if tries < 4 and n - pos >= pcap_chain.MIN_CHAIN_BYTES:
                    tries += 1
                    run = _chain_ng(buf, pos, endian)
                    if run is not None:
                        if starts:
                            pieces.append(np.asarray(starts, dtype=np.int64))
                            kpieces.append(np.asarray(kinds, dtype=np.int64))
                            starts.clear()
                            kinds.clear()
                        pieces.append(run[0])
                        kpieces.append(np.full(len(run[0]), _EPB, dtype=np.int64))
                        pos = run[1]
                        continue
                starts.append(pos)
                kinds.append(_EPB)
                pos += blen
                continue
            if btype == _SHB:
                if pos + 12 > n:
                    break
                bom = bytes(buf[pos + 8 : pos + 12])
                new_endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
                if new_endian is None:
                    self._corrupt(f"pcapng section header with unknown byte-order magic {bom.hex()}")
                    return done(pos, "corrupt", endian, section_base)
                blen = struct.unpack_from(new_endian + "I", buf, pos + 4)[0]
                if blen < 28 or blen > MAX_BLOCK or blen & 3:
                    self._corrupt(f"pcapng section header with bad length {blen}")
                    return done(pos, "corrupt", endian, section_base)
                if pos + blen > n:
                    break
                if starts or pieces:  # flush packets of the previous section first
                    return done(pos, "more", endian, section_base)
                section_base = len(self.interfaces)
                return done(pos + blen, "more", new_endian, section_base)
            if blen < 12 or blen > MAX_BLOCK or blen & 3:
                self._corrupt(f"pcapng block of type 0x{btype:x} with bad length {blen}")
                return done(pos, "corrupt", endian, section_base)
            if pos + blen > n:
                break
            if btype == _IDB:
                if starts or pieces:  # packets before it must not see this interface
                    return done(pos, "more", endian, section_base)
                self._idb(buf, pos, blen, endian)
            elif btype in (_SPB, _OPB) or btype == _EPB:
                starts.append(pos)
                kinds.append(btype)
            elif btype not in (4, 5, 7, 8, 9, 0x0A, 0x0B, 0xBAD, 0x40000BAD):
                self.unknown_blocks[btype] = self.unknown_blocks.get(btype, 0) + 1
            pos += blen
        return done(pos, "chunk", endian, section_base)

    def _corrupt(self, what: str) -> None:
        self.skipped += 1
        self.warnings.append(f"{what} after packet {self.packets}: stopped reading, the rest of the file is skipped")

    def _idb(self, buf: bytes, pos: int, blen: int, endian: str) -> None:
        if blen < 20:
            self.warnings.append(f"pcapng interface block too short ({blen} bytes); interface ignored")
            self.interfaces.append(_Iface(linktype=-1, snaplen=0))
            return
        linktype, _res, snaplen = struct.unpack_from(endian + "HHI", buf, pos + 8)
        iface = _Iface(linktype=linktype, snaplen=snaplen)
        opt, end = pos + 16, pos + blen - 4
        while opt + 4 <= end:
            code, olen = struct.unpack_from(endian + "HH", buf, opt)
            if code == 0:
                break
            value = bytes(buf[opt + 4 : opt + 4 + olen])
            if code == 9 and olen >= 1:  # if_tsresol
                r = value[0]
                if r & 0x80:
                    iface.ts_mul, iface.ts_div = 1_000_000_000, 2 ** (r & 0x7F)
                elif r <= 9:
                    iface.ts_mul, iface.ts_div = 10 ** (9 - r), 1
                else:
                    iface.ts_mul, iface.ts_div = 1, 10 ** (r - 9)
            elif code == 14 and olen >= 8:  # if_tsoffset (clamped: an absurd one is damage)
                iface.ts_offset_s = max(-(2**32), min(2**32, struct.unpack(endian + "q", value[:8])[0]))
            opt += 4 + ((olen + 3) & ~3)
        self.interfaces.append(iface)

    def _pcapng_batch(self, buf: bytes, starts: list[int], kinds: list[int], endian: str, section_base: int) -> Batch:
        s = np.asarray(starts, dtype=np.int64)
        k = np.asarray(kinds, dtype=np.int64)
        arr = self._padded(buf)
        u32 = _u32view(arr, endian)
        u16 = _u16view(arr, endian)
        blen = u32[s + 4].astype(np.int64)
        epb = k == _EPB
        opb = k == _OPB
        spb = k == _SPB
        iface = np.where(epb, u32[s + 8], 0).astype(np.int64)
        iface = np.where(opb, u16[s + 8], iface)
        hi = u32[np.where(spb, s, s + 12)].astype(np.uint64)
        lo = u32[np.where(spb, s, s + 16)].astype(np.uint64)
        units = (hi << np.uint64(32)) | lo
        cap = u32[np.where(spb, s, s + 20)].astype(np.int64)
        wire = u32[np.where(spb, s + 8, s + 24)].astype(np.int64)
        data = np.where(spb, s + 12, s + 28)
        room = blen - np.where(spb, 16, 32)
        cap = np.where(spb, np.minimum(wire, room), cap)
        n_if = len(self.interfaces) - section_base
        ok = (iface < n_if) & (cap <= room) & (room >= 0)
        bad = int((~ok).sum())
        if bad:
            self.skipped += bad
            self.warnings.append(f"{bad} packet block(s) with an unknown interface or a length past the block end skipped")
            s, iface, units, cap, wire, data, spb = (x[ok] for x in (s, iface, units, cap, wire, data, spb))
        gif = iface + section_base
        with np.errstate(all="ignore"):
            ts, lt = self._times(gif, units)
        if spb.any():  # simple packet blocks carry no time: take the previous packet's
            idx = np.where(spb, -1, np.arange(len(ts)))
            np.maximum.accumulate(idx, out=idx)
            ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], self._last_ts)
        if len(ts):
            self._last_ts = int(ts[-1])
        return self._emit(arr, data, cap, np.maximum(wire, cap), ts, lt)

    def _times(self, gif: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.zeros(len(gif), dtype=np.int64)
        lt = np.zeros(len(gif), dtype=np.int32)
        for g in np.unique(gif):
            sel = gif == g
            i = self.interfaces[int(g)]
            lt[sel] = i.linktype
            u = units[sel]
            if i.ts_div == 1:
                ns = u.astype(np.int64) * i.ts_mul
            elif i.ts_mul == 1 and i.ts_div < 2**63:
                ns = (u // np.uint64(i.ts_div)).astype(np.int64)
            else:  # binary resolution: float is exact enough (well below a microsecond)
                ns = (u.astype(np.float64) * (i.ts_mul / i.ts_div)).astype(np.int64)
            ts[sel] = ns + np.int64(i.ts_offset_s * 1_000_000_000)
        return ts, lt

    def resolutions_ns(self) -> tuple[float, ...]:
        return tuple(i.resolution_ns for i in self.interfaces)
