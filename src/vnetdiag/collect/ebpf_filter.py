"""pcap-filter words compiled into a bpftrace predicate over parsed header fields.

Accepted (a subset of pcap-filter(7)):

    [src|dst] host ADDR      IPv4 or IPv6 address
    [src|dst] port N         TCP/UDP/SCTP port;  sport N / dport N are src port / dst port
    tcp  udp  icmp  icmp6  sctp  ip  ip6
    not EXPR   EXPR and EXPR   EXPR or EXPR   ( EXPR )   (also ! && ||)

The script (collect/ebpf_script.py) parses each dropped packet's headers into
``$<p>h`` (IP version | protocol << 8 | TCP flags << 16 | sport << 32 |
dport << 48, ports in host order), ``$<p>sa $<p>sb`` (source address: IPv4
in ``sa``; IPv6 as two 64-bit loads) and ``$<p>da $<p>db``, with ``p`` =
``o`` for the outer headers and ``i`` for a VXLAN packet's inner ones.
Addresses are compared with constants in the byte order the little-endian
loads give, so no byte swapping runs in the kernel. ``compile_filter``
returns the predicate over one prefix.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from vnetdiag.errors import UsageError

_HINT = "e.g. --filter 'host 10.0.0.1 and tcp port 80' (words: host, port, sport, dport, src, dst, tcp, udp, icmp, " \
        "icmp6, sctp, ip, ip6, not, and, or, parentheses)"
_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[^\s()!&|]+)")
_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}
_V = "($Ph & 0xff)"
_P = "(($Ph >> 8) & 0xff)"
_PORT = {"s": "(($Ph >> 32) & 0xffff)", "d": "($Ph >> 48)"}
_PORT_PROTOS = f"({_P} == 6 || {_P} == 17 || {_P} == 132)"


@dataclass(frozen=True, slots=True)
class _Node:
    op: str
    """'and', 'or', 'not', or 'prim'."""
    args: tuple
    """Children, or for 'prim' the predicate template (with $P for the prefix)."""


def tokenize(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise UsageError(f"cannot read the filter at {text[pos:]!r}", hint=_HINT)
        tok = m.group(1)
        out.append({"&&": "and", "||": "or", "!": "not"}.get(tok, tok.lower() if tok.isalpha() else tok))
        pos = m.end()
    return out


def _le32(addr: ipaddress.IPv4Address) -> int:
    return struct.unpack("<I", addr.packed)[0]


def _le64x2(addr: ipaddress.IPv6Address) -> tuple[int, int]:
    return struct.unpack("<QQ", addr.packed)


def _host(direction: str | None, text: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an IPv4 or IPv6 address", hint=_HINT) from None
    sides = ("s", "d") if direction is None else (direction[0],)
    if addr.version == 4:
        v = _le32(addr)
        return f"({_V} == 4 && (" + " || ".join(f"$P{s}a == {v:#x}" for s in sides) + "))"
    a, b = _le64x2(addr)
    return f"({_V} == 6 && (" + " || ".join(f"($P{s}a == {a:#x} && $P{s}b == {b:#x})" for s in sides) + "))"


def _port(direction: str | None, text: str) -> str:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise UsageError(f"{text!r} is not a port number (0-65535)", hint=_HINT)
    sides = ("s", "d") if direction is None else (direction[0],)
    return f"({_PORT_PROTOS} && (" + " || ".join(f"{_PORT[s]} == {int(text)}" for s in sides) + "))"


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str = "a word") -> str:
        tok = self.peek()
        if tok is None:
            raise UsageError(f"the filter ends where {what} was expected", hint=_HINT)
        self.i += 1
        return tok

    def expr(self) -> _Node:
        node = self.term()
        while self.peek() == "or":
            self.i += 1
            node = _Node("or", (node, self.term()))
        return node

    def term(self) -> _Node:
        node = self.factor()
        while True:
            tok = self.peek()
            if tok == "and":
                self.i += 1
            elif tok is None or tok in ("or", ")"):
                return node
            # pcap-filter joins juxtaposed primitives with 'and' ("tcp port 80")
            node = _Node("and", (node, self.factor()))

    def factor(self) -> _Node:
        tok = self.take()
        if tok == "not":
            return _Node("not", (self.factor(),))
        if tok == "(":
            node = self.expr()
            if self.take("')'") != ")":
                raise UsageError("unbalanced parentheses in the filter", hint=_HINT)
            return node
        return self.primitive(tok)

    def primitive(self, tok: str) -> _Node:
        direction = None
        if tok in ("src", "dst"):
            direction, tok = tok, self.take(f"host or port after {tok!r}")
        elif tok in ("sport", "dport"):
            direction, tok = ("src" if tok == "sport" else "dst"), "port"
        if tok == "host":
            return _Node("prim", (_host(direction, self.take("an address")),))
        if tok == "port":
            return _Node("prim", (_port(direction, self.take("a port number")),))
        if direction is not None:
            raise UsageError(f"{direction!r} must be followed by host or port, not {tok!r}", hint=_HINT)
        if tok in _PROTOS:
            return _Node("prim", (f"{_P} == {_PROTOS[tok]}",))
        if tok == "icmp":
            return _Node("prim", (f"({_V} == 4 && {_P} == 1)",))
        if tok == "icmp6":
            return _Node("prim", (f"({_V} == 6 && {_P} == 58)",))
        if tok in ("ip", "ip6"):
            return _Node("prim", (f"{_V} == {4 if tok == 'ip' else 6}",))
        try:  # a bare address is a host
            ipaddress.ip_address(tok)
        except ValueError:
            raise UsageError(f"unknown filter word {tok!r}", hint=_HINT) from None
        return _Node("prim", (_host(None, tok),))


def parse(text: str) -> _Node | None:
    """The filter's syntax tree; None for an empty filter. UsageError when malformed."""
    toks = tokenize(text or "")
    if not toks:
        return None
    p = _Parser(toks)
    node = p.expr()
    if p.peek() is not None:
        raise UsageError(f"unexpected {p.peek()!r} in the filter", hint=_HINT)
    return node


def _emit(node: _Node, prefix: str) -> str:
    if node.op == "prim":
        return node.args[0].replace("$P", f"${prefix}")
    if node.op == "not":
        return f"!({_emit(node.args[0], prefix)})"
    a, b = (_emit(n, prefix) for n in node.args)
    return f"({a} {'&&' if node.op == 'and' else '||'} {b})"


def compile_filter(text: str, prefix: str = "o") -> str | None:
    """The bpftrace predicate for ``text`` over the variables of ``prefix``; None when empty."""
    node = parse(text)
    return None if node is None else _emit(node, prefix)


def flow_filter(proto: int | str, a: str, a_port: int, b: str, b_port: int) -> str:
    """Filter words matching one connection in both directions (a probe flow)."""
    name = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto) if isinstance(proto, int) else str(proto).lower()
    if name not in ("tcp", "udp", "sctp"):
        raise UsageError(f"a probe flow needs a protocol with ports (tcp, udp, sctp), not {proto!r}")
    one = f"src host {a} and src port {a_port} and dst host {b} and dst port {b_port}"
    two = f"src host {b} and src port {b_port} and dst host {a} and dst port {a_port}"
    return f"{name} and (({one}) or ({two}))"
