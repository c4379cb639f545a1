"""Read the counters of dropping firewall rules in every namespace.

A DROP rule counts exactly the packets it drops and names the device it
matches (-i/-o, --physdev-in/--physdev-out), so it places a loss precisely
where a traced NETFILTER_DROP can only guess. Each namespace is read with
``iptables-save -c`` and ``ip6tables-save -c`` and, for native nftables rules,
``nft -j list ruleset`` (collect/nftables.py).

Each rule is counted once. When the iptables command is the nf_tables one
(``iptables -V`` says ``nf_tables``), its tables are also in nft's ruleset:
they are read from iptables-save, which shows what nft's JSON cannot (xt
matches such as --physdev-in, chain policy counters), and skipped in nft's.
Except a table iptables-nft-save lists that is certainly native (it has sets
or verdict maps, which iptables-nft never makes): iptables-nft-save shows it
wrongly, so it is read from nft. Legacy tables beside nf_tables ones (the
``iptables-legacy tables present`` warning) are read with
iptables-legacy-save. With the legacy iptables, nft's ruleset has only native
tables and both are read whole.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from vnetdiag.collect import nftables
from vnetdiag.errors import VnetdiagError
from vnetdiag.model.namespaces import Namespace
from vnetdiag.model.netfilter import RuleCounter
from vnetdiag.system import nsexec

_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_POLICY = re.compile(r"^:(\S+) (DROP) \[(\d+):(\d+)\]$")
_DROPPING = ("DROP", "REJECT")
_BUILTIN_HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
                  "POSTROUTING": "postrouting"}
_LEGACY_WARNING = "legacy tables present"
_PARALLEL = 8
"""Namespaces read at once: each read is three short tool runs, mostly waiting."""


def save_tables(text: str) -> set[str]:
    """Table names an iptables-save output lists (``*filter`` lines)."""
    return {line[1:].strip() for line in text.splitlines() if line.startswith("*")}


def parse_save(text: str, netns: str, netns_inode: int = 0, *, family: str = "ip",
               backend: str = "iptables") -> list[RuleCounter]:
    """Dropping rules, and chain policies that drop, with their counters, from
    ``iptables-save -c`` (``family="ip6"``: ``ip6tables-save -c``) output."""
    out: list[RuleCounter] = []
    jumps: list[tuple[str, str, str]] = []  # table, chain, target chain
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        p = _POLICY.match(line)
        if p:
            chain = p.group(1)
            out.append(RuleCounter(netns=netns, netns_inode=netns_inode, backend=backend, family=family,  # type: ignore[arg-type]
                                   table=table, chain=chain, rule=f"-P {chain} DROP", target="DROP",
                                   verdict="drop", packets=int(p.group(3)), bytes=int(p.group(4))))
            continue
        m = _RULE.match(line)
        if not m:
            continue
        packets, nbytes, chain, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        opts: dict[str, str] = {}
        for i, w in enumerate(words[:-1]):
            if w in ("-i", "-o", "--physdev-in", "--physdev-out", "-j", "-g"):
                opts[w] = words[i + 1]
        target = opts.get("-j", "")
        if opts.get("-g") or target:  # targets that are not chains are never reached: harmless edges
            jumps.append((table, chain, opts.get("-g") or target))
        if target not in _DROPPING:
            continue
        out.append(RuleCounter(netns=netns, netns_inode=netns_inode, backend=backend, family=family,  # type: ignore[arg-type]
                               table=table, chain=chain, rule=rest, target=target, verdict=target.lower(),
                               packets=packets, bytes=nbytes,
                               in_device=opts.get("--physdev-in") or opts.get("-i"),
                               out_device=opts.get("--physdev-out") or opts.get("-o")))
    hooks = _save_hooks(jumps)
    return [_with_hook(r, hooks) for r in out]


def _save_hooks(jumps: list[tuple[str, str, str]]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Hooks per (table, chain): built-in chains their own; user chains those of
    the built-in chains that reach them through -j/-g."""
    edges: dict[tuple[str, str], set[str]] = {}
    for table, chain, target in jumps:
        edges.setdefault((table, chain), set()).add(target)
    out: dict[tuple[str, str], set[str]] = {}
    for table in {t for t, _, _ in jumps}:
        for chain, hook in _BUILTIN_HOOKS.items():
            todo, seen = [chain], {chain}
            while todo:
                here = todo.pop()
                out.setdefault((table, here), set()).add(hook)
                for nxt in edges.get((table, here), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _with_hook(rule: RuleCounter, hooks: dict[tuple[str, str], tuple[str, ...]]) -> RuleCounter:
    hook = hooks.get((rule.table, rule.chain)) or ((_BUILTIN_HOOKS[rule.chain],) if rule.chain in _BUILTIN_HOOKS
                                                   else ())
    return replace(rule, hook=",".join(hook) if hook else None)


@functools.lru_cache(maxsize=1)
def iptables_backend() -> str | None:
    """"nf_tables" or "legacy": what the ``iptables`` command drives (``iptables -V``);
    None when iptables is not installed."""
    if shutil.which("iptables") is None:
        return None
    try:
        version = nsexec.run(["iptables", "-V"], check=False, timeout_s=5).stdout
    except VnetdiagError:
        return None
    return "nf_tables" if "nf_tables" in version else "legacy"


def read_rules(namespaces: Iterable[Namespace]) -> tuple[list[RuleCounter], list[str]]:
    """Counted rules of every namespace (iptables' dropping rules and policies,
    every counted nft rule), and what could not be read or counted."""
    backend = iptables_backend()
    have_nft = shutil.which("nft") is not None
    problems: list[str] = []
    if backend is None and not have_nft:
        return [], [("firewall rule counters not read: neither iptables nor nft is installed "
                     "(hint: apt-get install iptables nftables)")]
    if not have_nft:
        problems.append("native nftables rules not read: nft is not installed (hint: apt-get install nftables)")
    rules: list[RuleCounter] = []
    namespaces = list(namespaces)
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, max(1, len(namespaces)))) as pool:
        for ns_rules, ns_problems in pool.map(lambda ns: _read_one(ns, backend, have_nft), namespaces):
            rules += ns_rules
            problems += ns_problems
    return rules, problems


def read_drop_rules(namespaces: Iterable[Namespace]) -> tuple[list[RuleCounter], list[str]]:
    """Dropping rules and policies of every namespace, iptables and nft, and what
    could not be read or counted."""
    rules, problems = read_rules(namespaces)
    return [r for r in rules if r.dropping], problems


def _tool(argv: list[str], ns: Namespace, problems: list[str]):
    try:
        r = nsexec.run(argv, netns=ns, check=False, timeout_s=10)
    except VnetdiagError as exc:
        problems.append(f"firewall rules of {ns.label}: {exc}")
        return None
    if r.returncode != 0:
        problems.append(f"firewall rules of {ns.label}: {argv[0]}: {r.stderr.strip() or 'failed'}")
        return None
    return r


def _read_one(ns: Namespace, backend: str | None, have_nft: bool) -> tuple[list[RuleCounter], list[str]]:
    problems: list[str] = []
    saves: list[tuple[str, str, str]] = []
    for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
        if backend is None or shutil.which(f"{tool}-save") is None:
            continue
        r = _tool([f"{tool}-save", "-c"], ns, problems)
        if r is None:
            continue
        saves.append((family, "iptables", r.stdout))
        if backend == "nf_tables" and _LEGACY_WARNING in r.stderr and shutil.which(f"{tool}-legacy-save"):
            legacy = _tool([f"{tool}-legacy-save", "-c"], ns, problems)
            if legacy is not None:
                saves.append((family, "iptables-legacy", legacy.stdout))
    objs: list[dict] = []
    devices: dict[tuple[str, str, str], tuple[str, ...]] = {}
    r = _tool(["nft", "-j", "list", "ruleset"], ns, problems) if have_nft else None
    if r is not None:
        try:
            objs = nftables.objects(r.stdout)
        except ValueError as exc:
            problems.append(f"firewall rules of {ns.label}: nft -j output not readable: {exc}")
        for family, table, chain in nftables.netdev_chains_without_devices(objs):
            text = _tool(["nft", "list", "chain", family, table, chain], ns, problems)
            devices[(family, table, chain)] = nftables.chain_devices(text.stdout) if text else ()
    rules, notes = combine(ns.label, ns.inode, nf_tables=backend == "nf_tables", saves=saves, nft=objs,
                           devices=devices)
    return rules, problems + notes


def combine(netns: str, netns_inode: int, *, nf_tables: bool, saves: Iterable[tuple[str, str, str]],
            nft: list[dict], devices: dict[tuple[str, str, str], tuple[str, ...]] | None = None,
            ) -> tuple[list[RuleCounter], list[str]]:
    """One namespace's rules, each counted once, from what the tools printed:
    ``saves`` as (family, backend, iptables-save output), ``nft`` as
    ``nftables.objects(nft -j list ruleset)``. ``nf_tables``: the iptables
    command is iptables-nft, so the tables its saves list are in ``nft`` too."""
    saves = list(saves)
    rules: list[RuleCounter] = []
    listed: set[tuple[str, str]] = set()  # (family, table) that iptables-nft shows
    for family, backend, text in saves:
        rules += parse_save(text, netns, netns_inode, family=family, backend=backend)
        if nf_tables and backend == "iptables":
            listed |= {(family, t) for t in save_tables(text)}
    native = nftables.certainly_native(nft) & listed
    notes = [f"table {family} {table} in {netns} is native nftables (it uses sets): read with nft, as "
             f"iptables-save shows it without its set lookups" for family, table in sorted(native)]
    rules = [r for r in rules if r.backend != "iptables" or (r.family, r.table) not in native]
    reading = nftables.parse_ruleset(nft, netns, netns_inode, skip_tables=listed - native, devices=devices)
    return rules + reading.rules, notes + reading.notes


def rule_deltas(before: Iterable[RuleCounter], after: Iterable[RuleCounter]) -> list[tuple[RuleCounter, int]]:
    """Rules whose packet counter grew (a rule that is new counts from zero)."""
    old = {r.key: r.packets for r in before}
    out = []
    for r in after:
        d = r.packets - old.get(r.key, 0)
        if d > 0:
            out.append((r, d))
    return out
