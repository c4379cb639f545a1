"""Option types shared by commands: one port rule and one ``--listen`` form.

argparse calls these while parsing, so a bad value is a one-line usage error
(exit 2) before any command starts work.
"""

from __future__ import annotations

import argparse

from vnetdiag.errors import UsageError, VnetdiagError


def port_number(text: str) -> int:
    """A TCP/UDP port, 1-65535."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def listen_address(text: str) -> str:
    """``ADDR:PORT``, ``:PORT`` or ``[V6]:PORT``, checked; kept as text (the
    commands and the watch config parse it with ``watch.config.parse_listen``)."""
    from vnetdiag.watch.config import parse_listen

    try:
        parse_listen(text, what=repr(text))
    except VnetdiagError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}; {exc.hint}" if exc.hint else exc.message) from None
    return text


def split_host_port(target: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); a bare host (or a bare
    IPv6 address, which has several colons) keeps ``default_port``.
    Raises UsageError (the target is a positional argument parsed in run())."""
    hint = "HOST, HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:7735"
    if target.startswith("["):
        host, sep, port = target[1:].partition("]")
        if not sep or not host or (port and not port.startswith(":")):
            raise UsageError(f"{target!r}: expected [ADDRESS]:PORT", hint=hint)
        port = port[1:]
    elif target.count(":") == 1:
        host, _, port = target.partition(":")
        if not host:
            raise UsageError(f"{target!r}: no host before the port", hint=hint)
    else:
        return target, default_port
    if not port and target.startswith("["):
        return host, default_port
    try:
        return host, port_number(port)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{target!r}: {exc}", hint=hint) from None
