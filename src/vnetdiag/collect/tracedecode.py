"""Decode raw ftrace records into model events, using the kernel's format files.

Each tracepoint's decoder is built from its ``format`` file: one precompiled
``struct`` covering the fields it needs at the offsets the kernel states, so a
kernel that moves a field still decodes. Reason names come from the
``__print_symbolic`` table of ``skb:kfree_skb``; locations are symbolized
through /proc/kallsyms (or a recorded map of them).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vnetdiag.model import events as ev
from vnetdiag.system.tracefs import EventFormat, PageLayout

# The tracepoints vnetdiag knows how to decode, as (system, event).
RECEIVE = ("net", "netif_receive_skb")
QUEUE = ("net", "net_dev_queue")
XMIT = ("net", "net_dev_xmit")
GRO = ("net", "napi_gro_receive_entry")
TIMEOUT = ("net", "net_dev_xmit_timeout")
CONSUME = ("skb", "consume_skb")
DELIVER = ("skb", "skb_copy_datagram_iovec")
DROP = ("skb", "kfree_skb")
RETRANS = ("tcp", "tcp_retransmit_skb")
RETRANS_SYNACK = ("tcp", "tcp_retransmit_synack")
FDB_ADD = ("bridge", "br_fdb_add")
FDB_UPDATE = ("bridge", "br_fdb_update")
FDB_DELETE = ("bridge", "fdb_delete")

KNOWN_EVENTS: tuple[tuple[str, str], ...] = (
    DROP, CONSUME, DELIVER, RECEIVE, QUEUE, XMIT, GRO, TIMEOUT, RETRANS, RETRANS_SYNACK, FDB_ADD, FDB_UPDATE, FDB_DELETE,
)

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}

Symbolizer = Callable[[int], str]


class DecodeError(ValueError):
    pass


def _layout(fmt: EventFormat, names: tuple[str, ...]) -> tuple[struct.Struct, tuple[str, ...]]:
    """A struct reading ``names`` (in offset order) and the order it returns them in."""
    wanted = []
    for n in names:
        f = fmt.field(n)
        if f is None:
            raise DecodeError(f"{fmt.system}:{fmt.name} has no field {n!r}")
        wanted.append(f)
    wanted.sort(key=lambda f: f.offset)
    code, pos = "<", 0
    for f in wanted:
        if f.offset < pos:
            raise DecodeError(f"{fmt.system}:{fmt.name}: overlapping field {f.name}")
        code += f"{f.offset - pos}x" if f.offset > pos else ""
        if f.data_loc:
            code += "I"
        elif f.array or f.size not in (1, 2, 4, 8):
            code += f"{f.size}s"
        else:
            code += _INT_CODES[(f.size, f.signed)]
        pos = f.offset + f.size
    return struct.Struct(code), tuple(f.name for f in wanted)


_NAMES: dict[bytes, str] = {}


def _str(buf: bytes, off: int, loc: int) -> str:
    """A __data_loc string; device names repeat, so decoded ones are cached."""
    start = off + (loc & 0xFFFF)
    raw = buf[start:start + (loc >> 16)]
    s = _NAMES.get(raw)
    if s is None:
        s = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        if len(_NAMES) < 65536:
            _NAMES[raw] = s
    return s


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def _ip(family: int, v4: bytes, v6: bytes) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, v6)
    return socket.inet_ntop(socket.AF_INET, v4[:4])


@dataclass(frozen=True, kw_only=True, slots=True)
class _Decoder:
    key: tuple[str, str]
    decode: Callable[[int, int, bytes, int], ev.TraceEvent]
    """(ts_ns, cpu, buf, off) -> event."""


def _make(fmt: EventFormat, symbolize: Symbolizer, reasons: dict[int, str]) -> _Decoder | None:
    key = (fmt.system, fmt.name)

    def pick(*names: str) -> tuple[Callable, list[int]]:
        st, order = _layout(fmt, names)
        return st.unpack_from, [order.index(n) for n in names]

    if key in (RECEIVE, QUEUE, GRO):
        up, (i_skb, i_len, i_name) = pick("skbaddr", "len", "name")
        cls = {RECEIVE: ev.ReceiveEvent, QUEUE: ev.QueueEvent, GRO: ev.GroEvent}[key]

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return cls(ts_ns=ts, cpu=cpu, skbaddr=v[i_skb], device=_str(buf, off, v[i_name]), len_bytes=v[i_len])
    elif key == XMIT:
        up, (i_skb, i_len, i_name, i_rc) = pick("skbaddr", "len", "name", "rc")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.XmitEvent(ts_ns=ts, cpu=cpu, skbaddr=v[i_skb], device=_str(buf, off, v[i_name]),
                                len_bytes=v[i_len], rc=v[i_rc])
    elif key == CONSUME:
        up, (i_skb, i_loc) = pick("skbaddr", "location")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.ConsumeEvent(ts_ns=ts, cpu=cpu, skbaddr=v[i_skb], location=symbolize(v[i_loc]))
    elif key == DELIVER:
        up, (i_skb, i_len) = pick("skbaddr", "len")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.DeliverEvent(ts_ns=ts, cpu=cpu, skbaddr=v[i_skb], len_bytes=v[i_len])
    elif key == DROP:
        up, (i_skb, i_loc, i_proto, i_reason) = pick("skbaddr", "location", "protocol", "reason")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            r = v[i_reason]
            return ev.DropEvent(ts_ns=ts, cpu=cpu, skbaddr=v[i_skb], location=symbolize(v[i_loc]),
                                reason=reasons.get(r, f"reason#{r}"), protocol=v[i_proto])  # the kernel stores ntohs()
    elif key in (RETRANS, RETRANS_SYNACK):
        names = ("sport", "dport", "family", "saddr", "daddr", "saddr_v6", "daddr_v6")
        if key == RETRANS:
            names += ("state",)
        up, idx = pick(*names)
        synack = key == RETRANS_SYNACK

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            fam = v[idx[2]]
            return ev.RetransmitEvent(ts_ns=ts, cpu=cpu, saddr=_ip(fam, v[idx[3]], v[idx[5]]), sport=v[idx[0]],
                                      daddr=_ip(fam, v[idx[4]], v[idx[6]]), dport=v[idx[1]], synack=synack,
                                      state=0 if synack else v[idx[7]])
    elif key in (FDB_UPDATE, FDB_DELETE):
        up, (i_br, i_dev, i_addr, i_vid) = pick("br_dev", "dev", "addr", "vid")
        kind = "update" if key == FDB_UPDATE else "delete"

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.FdbEvent(ts_ns=ts, cpu=cpu, kind=kind, bridge=_str(buf, off, v[i_br]),
                               device=_str(buf, off, v[i_dev]), mac=_mac(v[i_addr]), vid=v[i_vid])
    elif key == FDB_ADD:
        up, (i_dev, i_addr, i_vid) = pick("dev", "addr", "vid")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.FdbEvent(ts_ns=ts, cpu=cpu, kind="add", bridge="", device=_str(buf, off, v[i_dev]),
                               mac=_mac(v[i_addr]), vid=v[i_vid])
    elif key == TIMEOUT:
        up, (i_name, i_drv, i_q) = pick("name", "driver", "queue_index")

        def dec(ts, cpu, buf, off):
            v = up(buf, off)
            return ev.XmitTimeoutEvent(ts_ns=ts, cpu=cpu, device=_str(buf, off, v[i_name]),
                                       driver=_str(buf, off, v[i_drv]), queue=v[i_q])
    else:
        return None
    return _Decoder(key=key, decode=dec)


class RecordDecoder:
    """Turns pages of an instance's ring buffer into model events."""

    def __init__(self, formats: Iterable[EventFormat], layout: PageLayout, symbolize: Symbolizer) -> None:
        self.formats = {f.id: f for f in formats}
        self.layout = layout
        drop = next((f for f in self.formats.values() if (f.system, f.name) == DROP), None)
        self.reasons: dict[int, str] = drop.symbols("reason") if drop else {}
        self._by_id: dict[int, Callable] = {}
        cache: dict[int, str] = {}

        def cached(addr: int) -> str:
            s = cache.get(addr)
            if s is None:
                s = cache[addr] = symbolize(addr)
            return s

        self.symbolize = cached
        for fid, fmt in self.formats.items():
            d = _make(fmt, cached, self.reasons)
            if d is not None:
                self._by_id[fid] = d.decode
        self.id_of = {(f.system, f.name): f.id for f in self.formats.values()}
        self.unknown = 0
        """Records whose type this decoder has no format for."""

    def decode_page(self, cpu: int, page: bytes) -> list[ev.TraceEvent]:
        """Every record of one raw page, decoded (the hot loop: walk_page inlined)."""
        out: list[ev.TraceEvent] = []
        append = out.append
        by_id = self._by_id
        u16, u32 = _U16, _U32
        layout = self.layout
        ts = _U64(page, 0)[0]
        commit = int.from_bytes(page[layout.commit_offset:layout.commit_offset + layout.commit_size], "little")
        pos = layout.data_offset
        end = pos + (commit & _COMMIT_MASK)
        while pos + 4 <= end:
            head = u32(page, pos)[0]
            type_len = head & 0x1F
            if 0 < type_len <= 28:
                ts += head >> 5
                dec = by_id.get(u16(page, pos + 4)[0])
                if dec is None:
                    self.unknown += 1
                else:
                    append(dec(ts, cpu, page, pos + 4))
                pos += 4 + type_len * 4
            elif type_len == 0:
                ts += head >> 5
                size = u32(page, pos + 4)[0]
                dec = by_id.get(u16(page, pos + 8)[0])
                if dec is None:
                    self.unknown += 1
                else:
                    append(dec(ts, cpu, page, pos + 8))
                pos += 4 + size
            elif type_len == 30:  # time extend
                ts += (u32(page, pos + 4)[0] << 27) | (head >> 5)
                pos += 8
            elif type_len == 31:  # absolute time stamp (low 59 bits)
                ts = (ts & ~((1 << 59) - 1)) | (u32(page, pos + 4)[0] << 27) | (head >> 5)
                pos += 8
            else:  # padding; a zero delta means the rest of the page
                if head >> 5 == 0:
                    break
                pos += 4 + u32(page, pos + 4)[0]
        return out


_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_COMMIT_MASK = (1 << 27) - 1
