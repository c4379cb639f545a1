"""The agent protocol: versioned JSON lines over a byte stream (sans-I/O).

One JSON object per line, UTF-8. The agent speaks first:

    {"type": "hello", "protocol": 1, "version": "0.1.0", "host": "hv1", "pid": 4242, "scope": ["hv1*"]}

then answers requests in order, one answer per request, with the request's id:

    {"type": "request", "id": 3, "op": "snapshot", "args": {}}
    {"type": "result", "id": 3, "op": "snapshot", "value": {...CounterSnapshot...}}
    {"type": "error", "id": 3, "kind": "failed", "message": "...", "hint": "...", "exit_status": 3}

Operations are a closed list (``OPERATIONS``); values are records turned into
plain JSON by ``model.plain`` (the record type is the wire schema, so a field
added with a default keeps older peers readable). A peer of another
``PROTOCOL_VERSION`` is refused at the hello, with both versions named. Nothing
here reads or writes: ``encode`` makes a line, ``decode`` parses one, and
``Conversation`` keeps the ids of one side's outstanding requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from vnetdiag.errors import MissingFeatureError, VnetdiagError

PROTOCOL_VERSION = 1
SCHEMA = "vnetdiag.agent/1"

OPERATIONS: tuple[str, ...] = (
    "snapshot",      # counters of every namespace in scope, plus dropping firewall rules
    "trace_start",   # start a kernel drop trace window over the namespaces in scope
    "trace_stop",    # stop it: the TraceAnalysis, restricted to the scope
    "serve_start",   # start a probe server in a namespace in scope
    "serve_stop",    # stop it: its counts
    "probe",         # run the probe from a namespace in scope; blocks for its window
    "topology",      # the topology of the scope, and paths walked from its namespaces
    "clock",         # the agent's clocks, for the coordinator's offset estimate
    "bye",           # stop everything started, then exit
)

ErrorKind = Literal["bad-request", "unknown-op", "out-of-scope", "failed", "busy"]


class ProtocolError(VnetdiagError):
    """A peer sent something that is not this protocol (or is another version of it)."""

    exit_status = 3


class VersionMismatch(MissingFeatureError):
    """The agent speaks another protocol version."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    protocol: int
    version: str
    """The agent's vnetdiag version."""
    host: str
    """The agent's host name (uname), for people."""
    pid: int
    scope: tuple[str, ...] = ()
    """The namespace globs the agent answers for (empty: every namespace)."""
    type: str = "hello"


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    id: int
    op: str
    args: dict = field(default_factory=dict)
    type: str = "request"


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    id: int
    op: str
    value: object = None
    """Plain JSON (``model.plain.to_plain`` of the operation's record)."""
    type: str = "result"


@dataclass(frozen=True, kw_only=True, slots=True)
class Error:
    id: int | None
    """None: not tied to one request (the agent is going away)."""
    kind: ErrorKind
    message: str
    hint: str | None = None
    exit_status: int = 2
    type: str = "error"


Message = Hello | Request | Result | Error

_TYPES: dict[str, type] = {"hello": Hello, "request": Request, "result": Result, "error": Error}


def encode(msg: Message) -> bytes:
    """One line (with its newline) for ``msg``."""
    from vnetdiag.model.plain import to_plain

    return (json.dumps(to_plain(msg), separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> Message:
    """The message on one line; ProtocolError for anything else."""
    from vnetdiag.model.plain import from_plain

    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    try:
        obj = json.loads(text)
    except ValueError:
        raise ProtocolError(f"not a protocol line: {text.strip()[:80]!r}",
                            hint="is something on the remote side printing to stdout (a login banner)?") from None
    if not isinstance(obj, dict) or obj.get("type") not in _TYPES:
        raise ProtocolError(f"not a protocol message: {text.strip()[:80]!r}")
    cls = _TYPES[obj["type"]]
    try:
        msg = from_plain(cls, obj)
    except TypeError as exc:
        raise ProtocolError(f"malformed {obj['type']} message: {exc}") from None
    if isinstance(msg, Request) and not isinstance(msg.args, dict):
        raise ProtocolError("a request's args must be an object")
    return msg


def check_hello(msg: Message, *, where: str) -> Hello:
    """The hello, if ``msg`` is one of this protocol version; else a one-line error."""
    if not isinstance(msg, Hello):
        raise ProtocolError(f"{where}: the agent did not say hello (got {msg.type})")
    if msg.protocol != PROTOCOL_VERSION:
        from vnetdiag import __version__

        raise VersionMismatch(
            f"{where}: agent speaks protocol {msg.protocol} (vnetdiag {msg.version}), this is protocol "
            f"{PROTOCOL_VERSION} (vnetdiag {__version__})",
            hint=f"install the same vnetdiag version on {where} as here")
    return msg


class Conversation:
    """The requesting side's bookkeeping: ids, and which request an answer closes."""

    def __init__(self) -> None:
        self._next = 1
        self.pending: dict[int, str] = {}

    def request(self, op: str, **args) -> tuple[Request, bytes]:
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r}")  # a programming error, not the user's
        req = Request(id=self._next, op=op, args=args)
        self._next += 1
        self.pending[req.id] = op
        return req, encode(req)

    def answer(self, msg: Message) -> Result | Error:
        """Close the request ``msg`` answers (ProtocolError for an answer to nothing)."""
        if isinstance(msg, (Result, Error)) and (msg.id in self.pending or msg.id is None):
            if msg.id is not None:
                del self.pending[msg.id]
            return msg
        raise ProtocolError(f"unexpected {msg.type} message (id {getattr(msg, 'id', None)})")


def error_of(req_id: int | None, exc: BaseException) -> Error:
    """The Error message for an exception raised while answering a request."""
    if isinstance(exc, VnetdiagError):
        kind = "out-of-scope" if type(exc).__name__ == "OutOfScope" else "failed"
        return Error(id=req_id, kind=kind, message=exc.message, hint=exc.hint, exit_status=exc.exit_status)
    return Error(id=req_id, kind="failed", message=f"internal error: {type(exc).__name__}: {exc}",
                 hint="rerun the agent with --debug and report it", exit_status=70)


def raise_error(msg: Error, *, where: str) -> None:
    """Raise the VnetdiagError an Error message stands for, naming where it happened."""
    exc = VnetdiagError(f"{where}: {msg.message}", hint=msg.hint)
    exc.exit_status = msg.exit_status if msg.exit_status in (2, 3) else 3
    raise exc
