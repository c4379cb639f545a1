"""Find the records of a chunk of a capture file without a Python step per record.

A record's length must be read before the next record can be found, so a plain
reader walks the file record by record. Here candidate record headers are found
with one vectorised comparison (records close in time share the upper bits of
their timestamp), look-alikes in packet data are dropped, and the result is
accepted only if it is exactly the chain of records a walk would follow; else
the caller walks (and reports any damage it finds).
"""

from __future__ import annotations

import numpy as np

MIN_CHAIN_BYTES = 64 << 10
"""Below this many bytes a chunk is walked record by record (cheaper than the
vectorised search). Tests set it to 0 to exercise the search on small inputs."""
MAX_BLOCK = 16 << 20
"""Largest pcapng block accepted; beyond it the length field is taken as corrupt."""
_EPB = 6


def u32view(buf: np.ndarray, endian: str) -> np.ndarray:
    """A uint32 view starting at every byte offset of buf (unaligned reads)."""
    return np.ndarray(shape=(max(len(buf) - 3, 0),), dtype=endian + "u4", buffer=buf, strides=(1,))


def chain(buf: bytes, endian: str, limit: int) -> tuple[np.ndarray, int] | None:
    """Find the pcap records of a chunk without a Python step per record.

    Records close in time share the upper half of their ts_sec field, so one
    vectorised comparison finds every candidate header (plus rare look-alikes
    in packet data); candidates nobody links to are dropped, and the result is
    accepted only if it is exactly the chain a record-by-record walk would
    follow from offset 0 up to the last complete record. Otherwise None (the
    caller walks record by record, which also reports the damage)."""
    n = len(buf)
    if n < max(MIN_CHAIN_BYTES, 32):
        return None
    arr = np.frombuffer(buf, dtype=np.uint8)
    hi, lo = (3, 2) if endian == "<" else (0, 1)  # the upper 16 bits of ts_sec
    # A contiguous byte comparison is ~3x cheaper than a strided 16-bit one;
    # the second byte is checked on the (few) candidates only.
    cand = np.flatnonzero(arr[hi : n - 16 + hi] == arr[hi])
    cand = cand[arr[cand + lo] == arr[lo]]
    u32 = u32view(arr, endian)
    caplen = u32[cand + 8].astype(np.int64)
    keep = caplen <= limit
    cand, caplen = cand[keep], caplen[keep]
    nxt = cand + 16 + caplen
    for _ in range(4):
        if len(cand) == 0 or cand[0] != 0:
            return None
        if np.array_equal(nxt[:-1], cand[1:]):
            break
        targets = np.sort(nxt)
        at = np.minimum(np.searchsorted(targets, cand), len(targets) - 1)
        linked = targets[at] == cand
        linked[0] = True
        cand, nxt = cand[linked], nxt[linked]
    if len(cand) == 0 or not np.array_equal(nxt[:-1], cand[1:]):
        return None
    complete = nxt <= n
    k = int(complete.sum())  # the chain is increasing: complete records are a prefix
    if k == 0 or not complete[:k].all():
        return None
    end = int(nxt[k - 1])
    if k == len(cand) and end + 16 <= n:
        # The record after the last candidate was not found (its time is far
        # off): only accept if it is incomplete, else walk.
        nlen = int(u32[end + 8])
        if end + 16 + nlen <= n:
            return None
    return cand[:k], end


def chain_ng(buf, pos: int, endian: str) -> tuple[np.ndarray, int] | None:
    """A run of consecutive enhanced packet blocks starting at ``pos``, found
    like ``chain``: candidates are the offsets whose timestamp-high word equals
    the first block's (it changes every ~71 minutes at microsecond resolution)
    and whose block type is 6; the run is accepted only if each block ends
    exactly where the next starts, with a matching trailing length. It ends at
    the first block that is not such an EPB (the caller walks on from there)."""
    n = len(buf)
    arr = np.frombuffer(buf, dtype=np.uint8)
    u32 = u32view(arr, endian)
    tshi = u32[pos + 12]
    hits = np.flatnonzero(u32[pos + 12 : n - 20] == tshi)
    c = hits + pos
    c = c[u32[c] == _EPB]
    blen = u32[c + 4].astype(np.int64)
    ok = (blen >= 32) & (blen <= MAX_BLOCK) & ((blen & 3) == 0)
    c, blen = c[ok], blen[ok]
    if len(c) == 0 or c[0] != pos:
        return None
    nxt = c + blen
    # Drop look-alikes inside packet data: nothing links to them.
    for _ in range(4):
        follows = np.ones(len(c), dtype=bool)
        follows[1:] = nxt[:-1] == c[1:]
        if follows.all():
            break
        targets = np.sort(nxt)
        at = np.minimum(np.searchsorted(targets, c), len(targets) - 1)
        linked = targets[at] == c
        linked[0] = True
        c, nxt = c[linked], nxt[linked]
    follows = np.ones(len(c), dtype=bool)
    follows[1:] = nxt[:-1] == c[1:]
    k = len(c) if follows.all() else int(np.argmin(follows))  # first break ends the run
    k = min(k, int(np.searchsorted(nxt[:k], n, side="right")))  # complete blocks only
    if k == 0:
        return None
    c, nxt = c[:k], nxt[:k]
    if not (u32[nxt - 4] == (nxt - c)).all():
        return None
    return c, int(nxt[-1])
