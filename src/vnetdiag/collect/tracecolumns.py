"""Vectorised decoding of raw ring-buffer pages into columns (the fast path).

Path tracing decodes every record; doing that one Python object at a time
costs about a microsecond per record. Here a batch of pages becomes one 2-D
array of 32-bit words, the chain of record headers is followed for all pages
at once (one numpy step per record position), and the fields of the skb
events are gathered with the offsets from the format files. The result is
columns (time, cpu, kind, skb address, device, length) for the skb join, plus
model records for the few events that need them (drops; retransmit, FDB and
TX-timeout events go through the record decoder).

Records must start on 4-byte boundaries with their fields 4-byte aligned, as
the kernel lays them out; pages with absolute time stamps fall back to the
record decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vnetdiag.collect import tracedecode as td
from vnetdiag.model import events as ev

# Kind codes in the columns: indexes into model.events.SKB_KINDS.
RX, QUEUE, XMIT, GRO, CONSUME, DROP, DELIVER = (ev.SKB_KINDS.index(k) for k in (
    "rx", "queue", "xmit", "gro", "consume", "drop", "deliver"))
_SKB_EVENTS = {td.RECEIVE: RX, td.QUEUE: QUEUE, td.XMIT: XMIT, td.GRO: GRO, td.CONSUME: CONSUME, td.DROP: DROP,
               td.DELIVER: DELIVER}


@dataclass(frozen=True, kw_only=True, slots=True)
class Columns:
    """Decoded skb events of a batch, sorted by time."""

    ts_ns: np.ndarray
    cpu: np.ndarray
    kind: np.ndarray
    skbaddr: np.ndarray
    device: np.ndarray
    """Index into ``names`` (-1 for events without a device)."""
    len_bytes: np.ndarray
    names: list[str]
    drops: dict[int, ev.DropEvent]
    """Row -> DropEvent for the rows of kind DROP."""
    others: list[ev.TraceEvent]
    """Events that are not skb events (retransmits, FDB, TX timeouts)."""

    def __len__(self) -> int:
        return len(self.ts_ns)


class _Field:
    def __init__(self, fmt, name: str) -> None:
        f = fmt.field(name)
        if f is None or f.offset % 4:
            raise td.DecodeError(f"{fmt.system}:{fmt.name}: field {name} missing or not 4-byte aligned")
        self.word = f.offset // 4
        self.size = f.size


class ColumnDecoder:
    def __init__(self, records: td.RecordDecoder) -> None:
        self.records = records
        self.layout = records.layout
        if self.layout.data_offset % 4 or self.layout.commit_offset % 4:
            raise td.DecodeError("unexpected ring-buffer page layout")
        self.specs: dict[int, tuple[int, dict[str, _Field]]] = {}
        for fid, fmt in records.formats.items():
            kind = _SKB_EVENTS.get((fmt.system, fmt.name))
            if kind is None:
                continue
            names = {RX: ("skbaddr", "len", "name"), QUEUE: ("skbaddr", "len", "name"),
                     XMIT: ("skbaddr", "len", "name"), GRO: ("skbaddr", "len", "name"),
                     CONSUME: ("skbaddr",), DELIVER: ("skbaddr", "len"),
                     DROP: ("skbaddr", "location", "protocol", "reason")}[kind]
            self.specs[fid] = (kind, {n: _Field(fmt, n) for n in names})
        self._names: dict[bytes, int] = {}
        self.names: list[str] = []
        self.unknown = 0

    # -- walking

    def _walk(self, words: np.ndarray, page_ts: np.ndarray, end_w: np.ndarray):
        """(page row, data word, ts_ns) of every data record, in page order."""
        n_pages, n_words = words.shape
        tl = words & 31
        delta = (words >> 5).astype(np.uint64)
        nxt_len = np.zeros_like(words)
        nxt_len[:, :-1] = words[:, 1:]
        j = np.arange(n_words, dtype=np.int64)[None, :]
        small = (tl >= 1) & (tl <= 28)
        step = np.where(small, 1 + tl.astype(np.int64), 2)
        big = (tl == 0) | ((tl == 29) & (delta != 0))
        step = np.where(big, 1 + (nxt_len.astype(np.int64) // 4), step)
        nxt = j + np.maximum(step, 1)
        nxt = np.where((tl == 29) & (delta == 0), n_words, nxt)  # padding to the end of the page
        rows = np.arange(n_pages)
        cur = np.full(n_pages, self.layout.data_offset // 4, dtype=np.int64)
        pos_list, row_list = [], []
        while True:
            live = cur < end_w
            if not live.any():
                break
            r = rows[live]
            c = cur[live]
            pos_list.append(c)
            row_list.append(r)
            cur[live] = np.minimum(nxt[r, c], n_words)
        if not pos_list:
            e = np.zeros(0, dtype=np.int64)
            return e, e, np.zeros(0, dtype=np.uint64), e
        pos = np.concatenate(pos_list)
        row = np.concatenate(row_list)
        order = np.lexsort((pos, row))  # page by page, in header order
        pos, row = pos[order], row[order]
        t = tl[row, pos]
        stamped = np.unique(row[t == 31])
        if len(stamped):  # absolute time stamps: the record decoder does those pages
            ok = ~np.isin(row, stamped)
            pos, row, t = pos[ok], row[ok], t[ok]
        incr = np.where(t <= 28, delta[row, pos], 0)
        ext = t == 30
        if ext.any():
            hi = words[row[ext], np.minimum(pos[ext] + 1, n_words - 1)].astype(np.uint64)
            incr[ext] = delta[row[ext], pos[ext]] + (hi << np.uint64(27))
        # Cumulative time within each page, plus the page's base time.
        csum = np.cumsum(incr, dtype=np.uint64)
        starts = np.searchsorted(row, np.arange(n_pages))
        before = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0).astype(np.uint64)
        ts = page_ts[row] + csum - before[row]
        data = t <= 28
        dword = np.where(t == 0, pos + 2, pos + 1)
        return row[data], dword[data], ts[data], stamped

    # -- decoding

    def decode(self, pages: list[tuple[int, bytes]]) -> Columns:
        layout = self.layout
        size = layout.data_offset + layout.data_size
        full = [(c, p) for c, p in pages if len(p) == size]
        odd = [(c, p) for c, p in pages if len(p) != size]
        others: list[ev.TraceEvent] = []
        drops: dict[int, ev.DropEvent] = {}
        cols = []
        if full:
            buf = b"".join(p for _, p in full)
            words = np.frombuffer(buf, dtype="<u4").reshape(len(full), size // 4)
            cpus = np.array([c for c, _ in full], dtype=np.int64)
            page_ts = words[:, 0].astype(np.uint64) | (words[:, 1].astype(np.uint64) << np.uint64(32))
            commit = words[:, layout.commit_offset // 4] & ((1 << 27) - 1)
            end_w = (layout.data_offset + commit.astype(np.int64) + 3) // 4
            cols.append(self._columns(words, cpus, page_ts, end_w, full, others, odd))
        for cpu, page in odd:
            cols.append(self._from_records(self.records.decode_page(cpu, page), others))
        return self._concat(cols, others, drops)

    def _columns(self, words, cpus, page_ts, end_w, full, others, odd):
        row, dword, ts, stamped = self._walk(words, page_ts, end_w)
        odd += [full[int(r)] for r in stamped]
        n_words = words.shape[1]
        ids = words[row, dword] & 0xFFFF
        kind = np.full(len(row), -1, dtype=np.int8)
        skb = np.zeros(len(row), dtype=np.uint64)
        dev = np.full(len(row), -1, dtype=np.int32)
        length = np.zeros(len(row), dtype=np.int64)
        drop_rows = []
        flat = words.reshape(-1)

        def w(sel, fw: int, extra: int = 0):
            return flat[row[sel] * n_words + np.minimum(dword[sel] + fw + extra, n_words - 1)]

        def u64(sel, f: _Field):
            return w(sel, f.word).astype(np.uint64) | (w(sel, f.word, 1).astype(np.uint64) << np.uint64(32))

        for fid in np.unique(ids):
            sel = ids == fid
            spec = self.specs.get(int(fid))
            if spec is None:
                fmt = self.records.formats.get(int(fid))
                if fmt is not None:  # a non-skb event: decode those pages' records
                    for r in np.unique(row[sel]):
                        cpu, page = full[int(r)]
                        others.extend(e for e in self.records.decode_page(cpu, page) if not isinstance(e, ev.SkbEvent))
                else:
                    self.unknown += int(sel.sum())
                continue
            k, fields = spec
            kind[sel] = k
            skb[sel] = u64(sel, fields["skbaddr"])
            if "len" in fields:
                length[sel] = w(sel, fields["len"].word)
            if "name" in fields:
                dev[sel] = self._devices(words, row[sel], dword[sel], w(sel, fields["name"].word))
            if k == DROP:
                drop_rows.append((np.nonzero(sel)[0], fields))
        order = np.argsort(ts, kind="stable")
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        drops: dict[int, ev.DropEvent] = {}
        for idx, fields in drop_rows:
            loc = u64(idx, fields["location"])
            proto = w(idx, fields["protocol"].word) & 0xFFFF  # a u16 at the start of its word
            reason = w(idx, fields["reason"].word)
            for i, a, l, p, r in zip(idx.tolist(), skb[idx].tolist(), loc.tolist(), proto.tolist(),
                                     reason.tolist()):
                drops[int(inv[i])] = ev.DropEvent(
                    ts_ns=int(ts[i]), cpu=int(cpus[row[i]]), skbaddr=a, location=self.records.symbolize(l),
                    reason=self.records.reasons.get(r, f"reason#{r}"), protocol=p)  # host order already
        keep = kind[order] >= 0
        new_index = np.cumsum(keep) - 1
        return (ts[order][keep], cpus[row][order][keep], kind[order][keep], skb[order][keep], dev[order][keep],
                length[order][keep], {int(new_index[i]): d for i, d in drops.items() if keep[i]})

    def _devices(self, words, rows, dwords, loc) -> np.ndarray:
        """Device-name index of each record (names gathered as 16-byte keys)."""
        raw = words.view(np.uint8).reshape(words.shape[0], -1)
        start = dwords * 4 + (loc & 0xFFFF).astype(np.int64)
        n = np.minimum((loc >> 16).astype(np.int64), 16)
        idx = np.minimum(start[:, None] + np.arange(16)[None, :], raw.shape[1] - 1)
        b = raw[rows[:, None], idx]
        b = np.where(np.arange(16)[None, :] < n[:, None], b, 0).astype(np.uint8)
        keys = np.ascontiguousarray(b).view("S16").reshape(-1)
        uniq, inv = np.unique(keys, return_inverse=True)
        table = np.empty(len(uniq), dtype=np.int32)
        for i, k in enumerate(uniq.tolist()):  # numpy drops the trailing NULs of S16
            k = k.split(b"\0", 1)[0]
            j = self._names.get(k)
            if j is None:
                j = self._names[k] = len(self.names)
                self.names.append(k.decode("utf-8", "replace"))
            table[i] = j
        return table[inv]

    def _from_records(self, records, others):
        """Columns from already decoded records (fallback pages)."""
        ts, cpu, kind, skb, dev, length, drops = [], [], [], [], [], [], {}
        codes = {ev.ReceiveEvent: RX, ev.QueueEvent: QUEUE, ev.XmitEvent: XMIT, ev.GroEvent: GRO,
                 ev.ConsumeEvent: CONSUME, ev.DropEvent: DROP, ev.DeliverEvent: DELIVER}
        for e in records:
            k = codes.get(type(e))
            if k is None:
                others.append(e)
                continue
            if k == DROP:
                drops[len(ts)] = e
            ts.append(e.ts_ns)
            cpu.append(e.cpu)
            kind.append(k)
            skb.append(e.skbaddr)
            if k <= GRO:
                name = e.device.encode()
                j = self._names.get(name)
                if j is None:
                    j = self._names[name] = len(self.names)
                    self.names.append(e.device)
                dev.append(j)
                length.append(e.len_bytes)
            else:
                dev.append(-1)
                length.append(e.len_bytes if k == DELIVER else 0)
        return (np.array(ts, dtype=np.uint64), np.array(cpu, dtype=np.int64), np.array(kind, dtype=np.int8),
                np.array(skb, dtype=np.uint64), np.array(dev, dtype=np.int32), np.array(length, dtype=np.int64),
                drops)

    def _concat(self, cols, others, drops) -> Columns:
        if not cols:
            z = np.zeros(0)
            return Columns(ts_ns=z.astype(np.uint64), cpu=z.astype(np.int64), kind=z.astype(np.int8),
                           skbaddr=z.astype(np.uint64), device=z.astype(np.int32), len_bytes=z.astype(np.int64),
                           names=self.names, drops={}, others=others)
        base, merged_drops = 0, {}
        for c in cols:
            for i, d in c[6].items():
                merged_drops[base + i] = d
            base += len(c[0])
        arrays = [np.concatenate([c[i] for c in cols]) for i in range(6)]
        order = np.argsort(arrays[0], kind="stable")
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        return Columns(ts_ns=arrays[0][order], cpu=arrays[1][order], kind=arrays[2][order],
                       skbaddr=arrays[3][order], device=arrays[4][order], len_bytes=arrays[5][order],
                       names=self.names, drops={int(inv[i]): d for i, d in merged_drops.items()},
                       others=sorted(others, key=lambda e: e.ts_ns))


def concat(parts: list[Columns]) -> Columns:
    """Columns of several batches, sorted by time (stable)."""
    parts = [p for p in parts if len(p) or p.others]
    if not parts:
        z = np.zeros(0)
        return Columns(ts_ns=z.astype(np.uint64), cpu=z.astype(np.int64), kind=z.astype(np.int8),
                       skbaddr=z.astype(np.uint64), device=z.astype(np.int32), len_bytes=z.astype(np.int64),
                       names=[], drops={}, others=[])
    if len(parts) == 1:
        return parts[0]
    names = parts[-1].names
    base, drops = 0, {}
    for p in parts:
        for i, d in p.drops.items():
            drops[base + i] = d
        base += len(p)
    arrays = [np.concatenate([getattr(p, f) for p in parts]) for f in ("ts_ns", "cpu", "kind", "skbaddr", "device",
                                                                         "len_bytes")]
    order = np.argsort(arrays[0], kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return Columns(ts_ns=arrays[0][order], cpu=arrays[1][order], kind=arrays[2][order], skbaddr=arrays[3][order],
                   device=arrays[4][order], len_bytes=arrays[5][order], names=names,
                   drops={int(inv[i]): d for i, d in drops.items()},
                   others=sorted((e for p in parts for e in p.others), key=lambda e: e.ts_ns))


def split(cols: Columns, mark_ns: int) -> tuple[Columns, Columns]:
    """(rows with ts <= mark, the rest); ``cols`` must be sorted by time."""
    n = int(np.searchsorted(cols.ts_ns, np.uint64(max(mark_ns, 0)), side="right"))

    def part(sl: slice, lo: int, others) -> Columns:
        return Columns(ts_ns=cols.ts_ns[sl], cpu=cols.cpu[sl], kind=cols.kind[sl], skbaddr=cols.skbaddr[sl],
                       device=cols.device[sl], len_bytes=cols.len_bytes[sl], names=cols.names,
                       drops={i - lo: d for i, d in cols.drops.items() if (sl.start or 0) <= i < (sl.stop or len(cols))},
                       others=others)

    early = [e for e in cols.others if e.ts_ns <= mark_ns]
    late = [e for e in cols.others if e.ts_ns > mark_ns]
    return part(slice(0, n), 0, early), part(slice(n, len(cols)), n, late)
