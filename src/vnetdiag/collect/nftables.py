"""Native nftables rules with their counters, from ``nft -j list ruleset``.

Every rule with a counter becomes a ``RuleCounter``: family, table, chain, the
hook its chain hangs on (a user chain gets the hooks of the base chains that
jump to it), verdict, handle, the devices it matches (``iifname``/``oifname``,
or the device of a netdev chain) and its text in nft syntax without the
counter values. A rule's counter counts what reaches the counter, so a
``counter`` placed before a match counts more than the rule drops: such rules
are left out of the records and said in a note, as are dropping rules without
a counter, drops inside verdict maps, and base chains with ``policy drop``
(nftables keeps no counter for a policy).

Tables that iptables-nft owns are read by iptables-save instead (it shows the
xt matches nft's JSON leaves opaque, such as ``--physdev-in``, and the chain
policy counters nft does not show at all); ``parse_ruleset`` skips the
(family, table) pairs it is given. See ``collect/netfilter.py`` for how they
are chosen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from vnetdiag.model.netfilter import DROPPING_VERDICTS, RuleCounter

_VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "continue", "queue")
_PASSIVE = frozenset({"counter", "log", "mangle", "notrack"})
"""Statements that never end a rule's evaluation: between a counter and the
verdict they keep the count equal to the packets the verdict applies to."""
_BARE_META = frozenset({"iifname", "oifname", "iif", "oif", "iiftype", "oiftype"})
"""meta keys nft prints without the ``meta`` keyword."""
_IN_KEYS, _OUT_KEYS = frozenset({"iifname", "iif"}), frozenset({"oifname", "oif"})
_DEVICE_TEXT = re.compile(r'devices? = \{([^}]*)\}|device "?([^";\s]+)"?')


@dataclass
class Reading:
    """What one ruleset gave: counted rules, and notes on what cannot be counted."""

    rules: list[RuleCounter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Chain:
    family: str
    table: str
    name: str
    hook: str | None
    policy: str | None
    devices: tuple[str, ...]


def objects(text: str) -> list[dict]:
    """The ``nftables`` array of ``nft -j list ruleset`` output (empty for an empty ruleset)."""
    if not text.strip():
        return []
    return list(json.loads(text).get("nftables", []))


def chain_devices(text: str) -> tuple[str, ...]:
    """Devices of a netdev chain from ``nft list chain`` text: nft 1.0.6's JSON
    leaves them out, its text has ``device "eth0"`` or ``devices = { a, b }``."""
    m = _DEVICE_TEXT.search(text)
    if not m:
        return ()
    if m.group(1) is not None:
        return tuple(d.strip().strip('"') for d in m.group(1).split(",") if d.strip())
    return (m.group(2),)


def netdev_chains_without_devices(objs: list[dict]) -> list[tuple[str, str, str]]:
    """(family, table, chain) of base chains whose devices the JSON does not name."""
    out = []
    for o in objs:
        c = o.get("chain")
        if c and c.get("hook") in ("ingress", "egress") and not (c.get("dev") or c.get("devices")):
            out.append((c["family"], c["table"], c["name"]))
    return out


def certainly_native(objs: list[dict]) -> set[tuple[str, str]]:
    """(family, table) pairs that are certainly native: they hold named sets, maps
    or stateful objects, or rules using sets or verdict maps, none of which
    iptables-nft ever creates. Such a table with an iptables table's name is
    shown wrongly by iptables-nft-save (a set lookup vanishes), so it must be
    read here even though iptables-save lists it."""
    native: set[tuple[str, str]] = set()
    for o in objs:
        kind, body = next(iter(o.items()))
        named = kind in ("set", "map", "counter", "quota", "limit", "ct helper", "flowtable", "secmark", "synproxy")
        if named or (kind == "rule" and any(_uses_sets(e) for e in body.get("expr", ()))):
            native.add((body["family"], body["table"]))
    return native


def _uses_sets(expr) -> bool:
    if isinstance(expr, dict):
        if "vmap" in expr or "set" in expr or "map" in expr:
            return True
        return any(_uses_sets(v) for v in expr.values())
    if isinstance(expr, list):
        return any(_uses_sets(v) for v in expr)
    return isinstance(expr, str) and expr.startswith("@")


def parse_ruleset(objs: list[dict], netns: str, netns_inode: int = 0, *,
                  skip_tables: Collection[tuple[str, str]] = (),
                  devices: Mapping[tuple[str, str, str], tuple[str, ...]] | None = None) -> Reading:
    """Every counted rule of a ruleset (``objects(nft -j list ruleset)``), except
    in the (family, table) pairs of ``skip_tables``. ``devices``: the devices of
    netdev chains the JSON does not name, keyed by (family, table, chain)."""
    reading = Reading()
    chains: dict[tuple[str, str, str], _Chain] = {}
    counters: dict[tuple[str, str, str], tuple[int, int]] = {}
    rules: list[dict] = []
    for o in objs:
        kind, body = next(iter(o.items()))
        if kind == "metainfo" or (body.get("family"), body.get("table", body.get("name"))) in skip_tables:
            continue
        if kind == "chain":
            devs = body.get("devices") or body.get("dev") or ()
            devs = (devs,) if isinstance(devs, str) else tuple(devs)
            key = (body["family"], body["table"], body["name"])
            chains[key] = _Chain(family=key[0], table=key[1], name=key[2], hook=body.get("hook"),
                                 policy=body.get("policy"), devices=devs or (devices or {}).get(key, ()))
        elif kind == "counter":
            counters[(body["family"], body["table"], body["name"])] = (body["packets"], body["bytes"])
        elif kind == "rule":
            rules.append(body)
    hooks = _reaching_hooks(chains, rules)
    for c in chains.values():
        if c.hook and c.policy == "drop":
            reading.notes.append(f"nft {c.family} {c.table} {c.name} in {netns}: policy drop keeps no counter; "
                                 f"its drops show only as traced NETFILTER_DROP")
    for r in rules:
        rule = _rule(r, chains, hooks, counters, netns, netns_inode, reading.notes)
        if rule is not None:
            reading.rules.append(rule)
    return reading


def _reaching_hooks(chains: dict[tuple[str, str, str], _Chain], rules: list[dict]) -> dict[tuple, tuple[str, ...]]:
    """Hooks per chain: a base chain's own, and for user chains those of every
    base chain that reaches them through jump, goto or verdict-map jumps."""
    edges: dict[tuple, set[tuple]] = {}
    for r in rules:
        src = (r["family"], r["table"], r["chain"])
        for target in _jump_targets(r.get("expr", ())):
            edges.setdefault(src, set()).add((r["family"], r["table"], target))
    out: dict[tuple, set[str]] = {}
    for key, c in chains.items():
        if not c.hook:
            continue
        todo, seen = [key], {key}
        while todo:
            here = todo.pop()
            out.setdefault(here, set()).add(c.hook)
            for nxt in edges.get(here, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _jump_targets(expr) -> list[str]:
    if isinstance(expr, dict):
        found = [expr[k]["target"] for k in ("jump", "goto") if isinstance(expr.get(k), dict)]
        return found + [t for v in expr.values() for t in _jump_targets(v)]
    if isinstance(expr, list):
        return [t for v in expr for t in _jump_targets(v)]
    return []


def _rule(r: dict, chains, hooks, counters, netns: str, netns_inode: int, notes: list[str]) -> RuleCounter | None:
    exprs = r.get("expr", [])
    key = (r["family"], r["table"], r["chain"])
    chain = chains.get(key)
    where = f"nft {r['family']} {r['table']} {r['chain']} handle {r.get('handle')} in {netns}"
    kinds = [next(iter(e)) for e in exprs]
    verdict_at = max((i for i, k in enumerate(kinds) if k in _VERDICTS or k == "vmap"), default=None)
    verdict = kinds[verdict_at] if verdict_at is not None else ""
    counter_at = next((i for i, k in enumerate(kinds) if k == "counter"), None)
    text = rule_text(exprs)
    if verdict == "vmap" and any(v in DROPPING_VERDICTS for v in _vmap_verdicts(exprs[verdict_at]["vmap"])):
        notes.append(f"{where}: drops through a verdict map ({_short(text)}); its elements keep no counters")
    if counter_at is None:
        if verdict in DROPPING_VERDICTS:
            notes.append(f"{where}: '{_short(text)}' drops without a counter; add 'counter' to count it")
        return None
    end = verdict_at if verdict_at is not None else len(kinds)
    if any(k not in _PASSIVE for k in kinds[counter_at + 1:end]):
        if verdict in DROPPING_VERDICTS:
            notes.append(f"{where}: the counter of '{_short(text)}' comes before its match and counts every "
                         f"packet reaching it, not the ones it drops")
        return None
    value = exprs[counter_at]["counter"]
    if isinstance(value, str):  # a named counter object of the same table
        packets, nbytes = counters.get((r["family"], r["table"], value), (0, 0))
    else:
        packets, nbytes = value.get("packets", 0), value.get("bytes", 0)
    in_dev, out_dev = _devices(exprs)
    if chain is not None and chain.devices and len(chain.devices) == 1:
        if chain.hook == "ingress":
            in_dev = in_dev or chain.devices[0]
        elif chain.hook == "egress":
            out_dev = out_dev or chain.devices[0]
    target = verdict.upper()
    if verdict in ("jump", "goto"):
        target = exprs[verdict_at][verdict]["target"]
    hook = hooks.get(key)
    return RuleCounter(netns=netns, netns_inode=netns_inode, backend="nft", family=r["family"], table=r["table"],
                       chain=r["chain"], hook=",".join(hook) if hook else None, rule=text, target=target,
                       verdict=verdict, handle=r.get("handle"), packets=packets, bytes=nbytes, in_device=in_dev,
                       out_device=out_dev)


def _vmap_verdicts(vmap: dict) -> list[str]:
    data = vmap.get("data", {})
    elems = data.get("set", []) if isinstance(data, dict) else []
    return [next(iter(v)) for _k, v in (e for e in elems if isinstance(e, list) and len(e) == 2)
            if isinstance(v, dict)]


def _devices(exprs: list[dict]) -> tuple[str | None, str | None]:
    """The one device a rule's ``iifname``/``oifname`` (or iif/oif) equality names."""
    found: dict[str, str] = {}
    for e in exprs:
        m = e.get("match")
        if not m or m.get("op") != "==" or not isinstance(m.get("right"), str):
            continue
        left = m.get("left")
        meta = left.get("meta", {}).get("key") if isinstance(left, dict) else None
        if meta in _IN_KEYS:
            found.setdefault("in", m["right"])
        elif meta in _OUT_KEYS:
            found.setdefault("out", m["right"])
    return found.get("in"), found.get("out")


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- rule text ------------------------------------------------------------------

def rule_text(exprs: list[dict]) -> str:
    """The rule in nft syntax, without counter values: what ``nft list ruleset``
    prints for the common expressions, compact JSON for the rest."""
    return " ".join(_statement(e) for e in exprs)


def _statement(e: dict) -> str:
    kind, v = next(iter(e.items()))
    if kind == "match":
        left = _value(v["left"])
        op = v.get("op", "==")
        right = _value(v["right"], quote=_is_name(v["left"]))
        if isinstance(v["right"], bool):  # fib ... oif missing / exists
            right = "exists" if v["right"] else "missing"
        return f"{left} {right}" if op in ("==", "in") else f"{left} {op} {right}"
    if kind == "counter":
        return f'counter name "{v}"' if isinstance(v, str) else "counter"
    if kind in ("accept", "drop", "return", "continue"):
        return kind
    if kind in ("jump", "goto"):
        return f"{kind} {v['target']}"
    if kind == "reject":
        if not v:
            return "reject"
        return "reject with " + " ".join(str(x) for x in (v.get("type"), v.get("expr")) if x)
    if kind == "log":
        parts = ["log"]
        for k, val in (v or {}).items():
            parts.append(f'{k} "{val}"' if k == "prefix" else f"{k} {val}")
        return " ".join(parts)
    if kind == "limit":
        over = "over " if v.get("inv") else ""
        unit = f" {v['rate_unit']}" if v.get("rate_unit") and v.get("rate_unit") != "packets" else ""
        burst = f" burst {v['burst']} {v.get('burst_unit', 'packets')}" if v.get("burst") else ""
        return f"limit rate {over}{v['rate']}{unit}/{v.get('per', 'second')}{burst}"
    if kind == "vmap":
        elems = ", ".join(f"{_value(k)} : {_statement(d)}" for k, d in v["data"]["set"])
        return f"{_value(v['key'])} vmap {{ {elems} }}"
    if kind == "mangle":
        return f"{_value(v['key'])} set {_value(v['value'])}"
    if kind == "xt":
        return f"xt {v.get('type', '')} {v.get('name', '')}".strip()
    if kind == "queue":
        return "queue" + (f" num {_value(v['num'])}" if isinstance(v, dict) and "num" in v else "")
    return f"{kind} {json.dumps(v, separators=(',', ':'))}" if v is not None else kind


def _is_name(left) -> bool:
    return isinstance(left, dict) and left.get("meta", {}).get("key") in ("iifname", "oifname")


def _value(v, quote: bool = False) -> str:
    if isinstance(v, str):
        return f'"{v}"' if quote and not v.startswith("@") else v
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):  # flags: syn,ack
        return ",".join(_value(x, quote) for x in v)
    kind, body = next(iter(v.items()))
    if kind == "meta":
        key = body["key"]
        return key if key in _BARE_META else f"meta {key}"
    if kind == "payload":
        if "protocol" in body:
            return f"{body['protocol']} {body['field']}"
        return f"@{body.get('base')},{body.get('offset')},{body.get('len')}"
    if kind == "ct":
        return " ".join(str(x) for x in ("ct", body.get("dir"), body["key"]) if x)
    if kind == "set":
        return "{ " + ", ".join(_value(x, quote) for x in body) + " }"
    if kind == "prefix":
        return f"{_value(body['addr'])}/{body['len']}"
    if kind == "range":
        return f"{_value(body[0], quote)}-{_value(body[1], quote)}"
    if kind == "concat":
        return " . ".join(_value(x, quote) for x in body)
    if kind in ("&", "|", "^", "<<", ">>"):
        return f" {kind} ".join(_value(x) for x in body)
    if kind == "numgen":  # numgen random mod 50: how loss is often injected
        offset = f" offset {body['offset']}" if body.get("offset") else ""
        return f"numgen {body.get('mode', 'inc')} mod {body.get('mod')}{offset}"
    if kind == "fib":  # fib saddr . iif oif: reverse-path filtering written in nft
        flags = body.get("flags", [])
        return f"fib {' . '.join(flags if isinstance(flags, list) else [flags])} {body.get('result')}"
    if kind in ("exthdr", "tcp option", "sctp chunk", "rt", "socket", "osf", "ipsec", "hash", "symhash", "jhash"):
        return f"{kind} {json.dumps(body, separators=(',', ':'))}"
    return json.dumps(v, separators=(",", ":"))
