"""Parsers for /proc/net text: snmp, netstat, snmp6, sockstat, softnet_stat,
stat/nf_conntrack. They take text (or a root directory), so golden tests run
them on files recorded from a real machine."""

from __future__ import annotations

from pathlib import Path

from vnetdiag.model.counters import SoftnetCpu


def parse_snmp(text: str, into: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """/proc/net/snmp and /proc/net/netstat: pairs of "Section: names" and
    "Section: values" lines."""
    out = {} if into is None else into
    lines = text.splitlines()
    for i in range(0, len(lines) - 1, 2):
        head, _, names = lines[i].partition(":")
        head2, _, values = lines[i + 1].partition(":")
        if head != head2:
            continue
        section = out.setdefault(head, {})
        try:
            section.update(zip(names.split(), map(int, values.split())))
        except ValueError:  # not expected from the kernel; keep what parses
            for name, value in zip(names.split(), values.split()):
                try:
                    section[name] = int(value)
                except ValueError:
                    continue
    return out


def parse_snmp6(text: str) -> dict[str, int]:
    """/proc/net/snmp6: "Name value" per line."""
    words = text.split()
    try:
        return dict(zip(words[::2], map(int, words[1::2])))
    except ValueError:  # not expected from the kernel: fall back to line by line
        out: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
        return out


def parse_sockstat(text: str, into: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """/proc/net/sockstat(6): "PROTO: key value key value ..."."""
    out = {} if into is None else into
    for line in text.splitlines():
        head, _, rest = line.partition(":")
        parts = rest.split()
        fields = out.setdefault(head.strip(), {})
        for key, value in zip(parts[::2], parts[1::2]):
            try:
                fields[key] = int(value)
            except ValueError:
                pass
    return out


def parse_conntrack_stat(text: str) -> tuple[dict[str, int], ...]:
    """/proc/net/stat/nf_conntrack: a header of names, then one hex row per CPU.
    The names come from the header (the kernel's own), not from this code."""
    lines = text.splitlines()
    if not lines:
        return ()
    names = lines[0].split()
    rows = []
    for line in lines[1:]:
        values = line.split()
        if len(values) != len(names):
            continue
        rows.append({n: int(v, 16) for n, v in zip(names, values)})
    return tuple(rows)


# Named columns of /proc/net/softnet_stat (net/core/net-procfs.c); 3..7 are
# always zero (fields removed from the kernel long ago).
_SOFTNET_NAMES = {0: "processed", 1: "dropped", 2: "time_squeeze", 8: "received_rps",
                  9: "flow_limit_count", 10: "backlog_len"}


def _softnet_cpu_column(rows: list[list[int]]) -> int | None:
    """The column holding the CPU number, in kernels that print one (its position
    moved between versions): the first column from 11 on whose values strictly
    increase down the rows. With one row it cannot be told; the row number is used."""
    if len(rows) < 2:
        return None
    width = min(len(r) for r in rows)
    for c in range(11, width):
        values = [r[c] for r in rows]
        if all(a < b for a, b in zip(values, values[1:])) and values[0] == 0:
            return c
    return None


def parse_softnet(text: str) -> tuple[SoftnetCpu, ...]:
    rows = [[int(v, 16) for v in line.split()] for line in text.splitlines() if line.strip()]
    if not rows:
        return ()
    cpu_col = _softnet_cpu_column(rows)
    out = []
    for i, r in enumerate(rows):
        def col(c: int) -> int | None:
            return r[c] if c < len(r) else None
        extra = {f"col_{c}": v for c, v in enumerate(r)
                 if c not in _SOFTNET_NAMES and c != cpu_col and not 3 <= c <= 7}
        out.append(SoftnetCpu(
            cpu=r[cpu_col] if cpu_col is not None else i,
            processed=r[0], dropped=col(1) or 0, time_squeeze=col(2) or 0,
            received_rps=col(8) or 0, flow_limit_count=col(9) or 0, backlog_len=col(10),
            extra=extra,
        ))
    return tuple(out)


def read_softnet(proc_root: Path = Path("/proc")) -> tuple[SoftnetCpu, ...]:
    return parse_softnet((proc_root / "net/softnet_stat").read_text())
