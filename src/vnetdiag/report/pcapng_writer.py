"""Dropped packets as pcapng, for Wireshark: records in, bytes out (pure).

    data = pcapng_bytes(result.packets, wall_offset_ns=offset, netns_labels={inode: "ns-a"})

One Interface Description Block per (namespace inode, ifindex, link type):
a device seen with and without a MAC header gets two, Ethernet and raw IP.
Its name (``if_name``) is the device name, its description names the
namespace by label and inode. Each dropped packet is one Enhanced Packet
Block whose comment (``opt_comment``) names the drop reason, the kernel
location and the namespace, so ``tshark -T fields -e frame.comment`` lists
them. Timestamps are in nanoseconds (``if_tsresol`` 9): the records' CLOCK_MONOTONIC
time plus one offset to the wall clock, taken by the caller at the start of
the trace (one offset for all, so intervals between packets stay exact).

Format: draft-ietf-opsawg-pcapng (section header 0x0A0D0D0A, little endian).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from vnetdiag.model.drops import PacketDrop

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
"""Raw IPv4 or IPv6, told apart by the version nibble (tcpdump's LINKTYPE_RAW)."""

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_LINK = {"mac": LINKTYPE_ETHERNET, "network": LINKTYPE_RAW, "": LINKTYPE_RAW}
DEFAULT_SNAPLEN = 128


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _options(*opts: tuple[int, bytes]) -> bytes:
    if not opts:
        return b""
    return b"".join(_option(c, v) for c, v in opts) + struct.pack("<HH", _OPT_END, 0)


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def section_header(application: str = "vnetdiag drops") -> bytes:
    body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1)  # section length unknown
    return _block(_SHB, body + _options((_SHB_USERAPPL, application.encode())))


def interface_block(*, link_type: int, name: str, description: str, snaplen: int) -> bytes:
    body = struct.pack("<HHI", link_type, 0, snaplen)
    opts = [(_IF_NAME, name.encode())] if name else []
    opts += [(_IF_DESCRIPTION, description.encode()), (_IF_TSRESOL, bytes([9]))]
    return _block(_IDB, body + _options(*opts))


def packet_block(*, interface_id: int, ts_ns: int, data: bytes, wire_len_bytes: int, comment: str) -> bytes:
    body = struct.pack("<IIIII", interface_id, (ts_ns >> 32) & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF, len(data),
                       max(wire_len_bytes, len(data)))
    return _block(_EPB, body + _pad4(data) + _options((_OPT_COMMENT, comment.encode())))


def namespace_label(inode: int, labels: Mapping[int, str | None]) -> str:
    name = labels.get(inode)
    return f"{name} (netns:{inode})" if name else f"netns:{inode}"


def comment(p: PacketDrop, labels: Mapping[int, str | None]) -> str:
    """What a reader needs beside the bytes: why, where in the kernel, where in the network."""
    text = f"drop reason={p.reason} location={p.location} netns={namespace_label(p.netns_inode, labels)}"
    if p.device:
        text += f" dev={p.device}"
    if p.inner is not None:
        text += f" inner={p.inner.src}:{p.inner.sport}>{p.inner.dst}:{p.inner.dport}"
    return text


def pcapng_bytes(packets: Iterable[PacketDrop], *, wall_offset_ns: int,
                 netns_labels: Mapping[int, str | None] = {}, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """A whole pcapng file of ``packets`` in time order; ``wall_offset_ns`` is
    added to each CLOCK_MONOTONIC timestamp (wall time - monotonic time at start)."""
    out = [section_header()]
    interfaces: dict[tuple[int, int, int], int] = {}
    for p in sorted(packets, key=lambda r: r.ts_ns):
        link = _LINK[p.head_from]
        key = (p.netns_inode, p.ifindex, link)
        if key not in interfaces:
            interfaces[key] = len(interfaces)
            ns = namespace_label(p.netns_inode, netns_labels)
            # no device: dropped before one was chosen (an OUTPUT rule), placed by its socket's namespace
            name = p.device or (f"ifindex {p.ifindex}" if p.ifindex else "no device")
            out.append(interface_block(link_type=link, name=name, description=f"{name} (ifindex {p.ifindex}) in {ns}",
                                       snaplen=snaplen))
        out.append(packet_block(interface_id=interfaces[key], ts_ns=p.ts_ns + wall_offset_ns, data=p.head,
                                wire_len_bytes=p.wire_len_bytes, comment=comment(p, netns_labels)))
    return b"".join(out)
