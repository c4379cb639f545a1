"""Read a namespace's routing configuration (model/routes.py) with ``ip -j``
(every table, both families) and /proc/sys/net/ipv4/conf/*/rp_filter, through
the one namespace executor. What cannot be read is a problem line, not an error:
a diagnosis goes on without it."""

from __future__ import annotations

import json
from collections.abc import Iterable

from vnetdiag.errors import VnetdiagError
from vnetdiag.model.namespaces import Namespace
from vnetdiag.model.routes import NetnsRoutes, Route, Rule
from vnetdiag.system import nsexec


def parse_routes(doc: list, family: int) -> list[Route]:
    """Routes from ``ip -j [-6] route show table all``."""
    out = []
    for r in doc:
        if not isinstance(r, dict) or "dst" not in r:
            continue
        out.append(Route(family=family, table=str(r.get("table", "main")), type=r.get("type", "unicast"),
                         dst=r["dst"], dev=r.get("dev"), gateway=r.get("gateway"),
                         nexthop_devs=tuple(n["dev"] for n in r.get("nexthops", ()) if "dev" in n)))
    return out


def _prefix(addr: str | None, plen: int | None) -> str | None:
    if addr in (None, "all"):
        return None
    return f"{addr}/{plen}" if plen is not None else addr


def parse_rules(doc: list, family: int) -> list[Rule]:
    """Policy rules from ``ip -j [-6] rule show``."""
    out = []
    for r in doc:
        if not isinstance(r, dict) or "priority" not in r:
            continue
        action = r.get("action", "lookup" if "table" in r else "unknown")
        out.append(Rule(family=family, priority=int(r["priority"]), action=action,
                        table=str(r["table"]) if "table" in r else None,
                        src=_prefix(r.get("src"), r.get("srclen")), dst=_prefix(r.get("dst"), r.get("dstlen")),
                        iif=r.get("iif"), oif=r.get("oif"), fwmark=r.get("fwmark")))
    return out


def parse_rp_filter(text: str) -> list[tuple[str, int]]:
    """(device, value) from ``grep -H . /proc/sys/net/ipv4/conf/*/rp_filter``."""
    out = []
    for line in text.splitlines():
        path, _, value = line.partition(":")
        parts = path.split("/")
        if len(parts) >= 2 and parts[-1] == "rp_filter" and value.strip().lstrip("-").isdigit():
            out.append((parts[-2], int(value)))
    return out


def _json(argv: list[str], ns: Namespace, problems: list[str]) -> list:
    try:
        r = nsexec.run(argv, netns=ns, check=False, timeout_s=10)
    except VnetdiagError as exc:
        problems.append(f"routes of {ns.label}: {exc}")
        return []
    if r.returncode != 0:
        problems.append(f"routes of {ns.label}: {' '.join(argv[:4])}: {r.stderr.strip() or 'failed'}")
        return []
    try:
        doc = json.loads(r.stdout or "[]")
    except ValueError:
        problems.append(f"routes of {ns.label}: {' '.join(argv[:4])} printed no JSON")
        return []
    return doc if isinstance(doc, list) else []


def read_one(ns: Namespace, problems: list[str]) -> NetnsRoutes:
    routes: list[Route] = []
    rules: list[Rule] = []
    for family, flag in ((4, "-4"), (6, "-6")):
        routes += parse_routes(_json(["ip", "-j", flag, "route", "show", "table", "all"], ns, problems), family)
        rules += parse_rules(_json(["ip", "-j", flag, "rule", "show"], ns, problems), family)
    rp = nsexec.run(["sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter"], netns=ns, check=False)
    return NetnsRoutes(netns_inode=ns.inode, routes=tuple(routes), rules=tuple(rules),
                       rp_filter=tuple(parse_rp_filter(rp.stdout)))


def read_routes(namespaces: Iterable[Namespace]) -> tuple[tuple[NetnsRoutes, ...], list[str]]:
    problems: list[str] = []
    return tuple(read_one(ns, problems) for ns in namespaces), problems
