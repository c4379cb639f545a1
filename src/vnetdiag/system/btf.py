"""Struct member offsets and enum values from the kernel's BTF (/sys/kernel/btf/vmlinux).

bpftrace follows BTF types itself, but v0.17 loses members that come after
anonymous cache-line padding (``long: 64``) in some structs: it reports
``struct tap_queue`` without its ``ring``. This reader gives the byte offset
the kernel's own BTF states, so the generated script can add it to a pointer.
Only what that needs is decoded: type records are skipped by kind, and only
STRUCT/UNION members and ENUM/ENUM64 values are read (``enum_value``: the
numbers the kernel's UAPI uses, e.g. a BPF program type in fdinfo).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F
_STRUCT, _UNION, _ENUM, _ENUM64 = 4, 5, 6, 19
# Extra bytes after the 12-byte btf_type, per kind: fixed, and per vlen item.
_EXTRA = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0), 9: (0, 0),
          10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0), 17: (4, 0),
          18: (0, 0), 19: (0, 12)}


class BtfError(ValueError):
    pass


def _parse(data: bytes, wanted: frozenset[str]) -> dict[str, dict[str, int]]:
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data, 0)
    if magic != _MAGIC:
        raise BtfError("not a BTF file")
    types = hdr_len + type_off
    strs = hdr_len + str_off
    strtab = data[strs:strs + str_len]

    def name(off: int) -> str:
        end = strtab.find(b"\0", off)
        return strtab[off:end].decode()

    wanted_b = {w.encode() for w in wanted}
    out: dict[str, dict[str, int]] = {}
    pos, end = types, types + type_len
    unpack = struct.Struct("<III").unpack_from
    while pos < end:
        name_off, info, _size = unpack(data, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        try:
            fixed, per = _EXTRA[kind]
        except KeyError:
            raise BtfError(f"unknown BTF kind {kind}") from None
        body = pos + 12
        if kind in (_STRUCT, _UNION, _ENUM, _ENUM64) and name_off:
            n_end = strtab.find(b"\0", name_off)
            if strtab[name_off:n_end] in wanted_b and name(name_off) not in out:
                members = {}
                for i in range(vlen):
                    if kind == _ENUM:
                        m_name, value = struct.unpack_from("<Ii" if kflag else "<II", data, body + 8 * i)
                    elif kind == _ENUM64:
                        m_name, lo, hi = unpack(data, body + 12 * i)
                        value = lo | hi << 32
                    else:
                        m_name, _m_type, m_off = unpack(data, body + 12 * i)
                        value = m_off & 0xFFFFFF if kflag else m_off  # bit offset
                    if m_name:
                        members[name(m_name)] = value
                out[name(name_off)] = members
        pos = body + fixed + per * vlen
    return out


@lru_cache(maxsize=8)
def _types(path: Path, names: frozenset[str]) -> dict[str, dict[str, int]]:
    return _parse(path.read_bytes(), names)


def member_offset(struct_name: str, member: str, *, path: Path = VMLINUX) -> int | None:
    """Byte offset of ``member`` in ``struct struct_name``, or None when the
    kernel's BTF has no such struct or member (or it is a bitfield)."""
    bits = _types(path, frozenset({struct_name})).get(struct_name, {}).get(member)
    if bits is None or bits % 8:
        return None
    return bits // 8


def enum_value(enum_name: str, member: str, *, path: Path = VMLINUX) -> int | None:
    """The value of ``member`` in ``enum enum_name``, or None when the kernel's BTF lacks it."""
    return _types(path, frozenset({enum_name})).get(enum_name, {}).get(member)
