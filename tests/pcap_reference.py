"""tshark as the reference for the capture analysis tests and the benchmark.

Reads tshark's own outputs: ``-q -z conv,tcp|udp`` (frames per direction, bytes
as tshark rounds them) and, for exact byte counts, ``-T fields`` sums of
frame.len per tcp.stream / udp.stream and direction.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict

TSHARK = shutil.which("tshark")

_LINE = re.compile(
    r"^(?P<a>\S+)\s+<->\s+(?P<b>\S+)\s+(?P<fba>\d+)\s+(?P<bba>\d+ \S+)\s+(?P<fab>\d+)\s+(?P<bab>\d+ \S+)\s+"
    r"(?P<f>\d+)\s+(?P<by>\d+ \S+)\s+(?P<start>[\d.]+)\s+(?P<dur>[\d.]+)")


def _run(args: list[str], timeout: float = 120) -> str:
    res = subprocess.run([TSHARK, "-n", *args], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"tshark {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def _bracket(endpoint: str) -> str:
    """tshark prints IPv6 endpoints as addr:port; vnetdiag as [addr]:port."""
    addr, _, port = endpoint.rpartition(":")
    return f"[{addr}]:{port}" if ":" in addr else endpoint


def conv(path: str, proto: str) -> list[dict]:
    """Rows of ``tshark -q -z conv,<proto>``: a, b, frames/bytes text each way
    ("->" is a to b, "<-" is b to a)."""
    out = _run(["-r", path, "-q", "-z", f"conv,{proto}"])
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line.strip())
        if m:
            rows.append({"a": _bracket(m["a"]), "b": _bracket(m["b"]), "frames_ab": int(m["fab"]), "frames_ba": int(m["fba"]),
                         "bytes_ab_text": m["bab"], "bytes_ba_text": m["bba"],
                         "start_s": float(m["start"]), "duration_s": float(m["dur"])})
    return rows


def tshark_size(n: int) -> str:
    """How tshark 4.0 prints a byte count in the conversation table."""
    if n < 10_000:
        return f"{n} bytes"
    for unit, div in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n / div < 10_000 or unit == "GB":
            return f"{int(n / div)} {unit}"
    return str(n)


def stream_bytes(path: str, proto: str = "tcp") -> dict[int, dict[str, tuple[int, int]]]:
    """{stream: {src endpoint: (frames, frame bytes)}} from tshark's fields (exact)."""
    fields = ["-e", f"{proto}.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", f"{proto}.srcport", "-e", "frame.len"]
    out = _run(["-r", path, "-Y", proto, "-T", "fields", "-E", "occurrence=l", *fields])
    acc: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or not parts[0]:
            continue
        stream, v4, v6, port, flen = parts
        addr = v4 or v6
        ep = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        acc[int(stream)][ep][0] += 1
        acc[int(stream)][ep][1] += int(flen)
    return {s: {ep: tuple(v) for ep, v in d.items()} for s, d in acc.items()}


def frames(path: str, display_filter: str) -> set[int]:
    """Frame numbers matching a display filter."""
    return retransmitted_frames(path, display_filter)


def retransmitted_frames(path: str, field: str = "tcp.analysis.retransmission") -> set[int]:
    out = _run(["-r", path, "-Y", field, "-T", "fields", "-e", "frame.number"])
    return {int(x) for x in out.split()}
