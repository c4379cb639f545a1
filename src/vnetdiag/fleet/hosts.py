"""Hosts from an Ansible inventory (INI or YAML), or a plain ssh destination.

Operators already keep their hypervisors in an inventory; the coordinator reads
the variables Ansible's ssh connection uses, and a few of its own:

    [hypervisors]
    hv1 ansible_host=10.0.0.1 ansible_user=root
    hv[2:3] ansible_user=root

    [hypervisors:vars]
    vnetdiag_command=/opt/vnetdiag/bin/vnetdiag   # where vnetdiag is (default: on PATH)
    vnetdiag_netns=vm-*,br-*                      # the agent's scope (default: every namespace)
    vnetdiag_role=hypervisor                      # peers compared by (default: first group)

``ansible_port``, ``ansible_ssh_private_key_file``, ``ansible_ssh_common_args`` and
``ansible_ssh_extra_args`` are honoured. Group variables apply from the
outermost group in; host variables win.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from vnetdiag.errors import BadInputError, NotFoundError
from vnetdiag.model.fleet import Host

_RANGE = re.compile(r"\[(\d+):(\d+)\]")


def _expand(pattern: str) -> list[str]:
    """Ansible's numeric host ranges: hv[01:03] -> hv01 hv02 hv03."""
    m = _RANGE.search(pattern)
    if not m:
        return [pattern]
    lo, hi = m.group(1), m.group(2)
    width = len(lo) if lo.startswith("0") else 0
    out = []
    for i in range(int(lo), int(hi) + 1):
        out += _expand(pattern[:m.start()] + str(i).zfill(width) + pattern[m.end():])
    return out


def _host(name: str, hvars: dict, groups: list[str]) -> Host:
    dest = str(hvars.get("ansible_host", name))
    user = hvars.get("ansible_user") or hvars.get("ansible_ssh_user")
    opts: list[str] = []
    key = hvars.get("ansible_ssh_private_key_file")
    if key:
        opts += ["-i", str(key)]
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if hvars.get(var):
            opts += shlex.split(str(hvars[var]))
    netns = hvars.get("vnetdiag_netns") or ()
    if isinstance(netns, str):
        netns = [g.strip() for g in netns.split(",") if g.strip()]
    port = hvars.get("ansible_port") or hvars.get("ansible_ssh_port")
    real = [g for g in groups if g not in ("all", "ungrouped")]
    return Host(name=name, destination=f"{user}@{dest}" if user else dest, port=int(port) if port else None,
                ssh_options=tuple(opts), command=str(hvars.get("vnetdiag_command", "vnetdiag")),
                netns=tuple(str(g) for g in netns), groups=tuple(real),
                role=str(hvars["vnetdiag_role"]) if hvars.get("vnetdiag_role") else (real[0] if real else None))


class _Inventory:
    """Groups, their vars and children, host vars: what both formats read into."""

    def __init__(self) -> None:
        self.group_vars: dict[str, dict] = {"all": {}}
        self.children: dict[str, list[str]] = {"all": []}
        self.members: dict[str, list[str]] = {}
        self.host_vars: dict[str, dict] = {}

    def add_host(self, group: str, name: str, hvars: dict) -> None:
        for n in _expand(name):
            self.members.setdefault(group, [])
            if n not in self.members[group]:
                self.members[group].append(n)
            self.host_vars.setdefault(n, {}).update(hvars)

    def hosts(self) -> dict[str, Host]:
        parents: dict[str, list[str]] = {}
        for g, kids in self.children.items():
            for k in kids:
                parents.setdefault(k, []).append(g)

        def chain(g: str, seen: tuple = ()) -> list[str]:  # outermost group first
            out: list[str] = []
            for p in parents.get(g, ["all"] if g != "all" else []):
                if p not in seen:
                    out += [x for x in chain(p, seen + (g,)) if x not in out]
            return out + [g]

        out: dict[str, Host] = {}
        for name in self.host_vars:
            groups = [g for g, m in self.members.items() if name in m]
            order: list[str] = []
            for g in groups or ["all"]:
                order += [x for x in chain(g) if x not in order]
            merged: dict = {}
            for g in order:
                merged.update(self.group_vars.get(g, {}))
            merged.update(self.host_vars[name])
            out[name] = _host(name, merged, order[::-1])
        return out


def parse_ini(text: str, where: str = "inventory") -> dict[str, Host]:
    inv = _Inventory()
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise BadInputError(f"{where}:{n}: unclosed section {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise BadInputError(f"{where}:{n}: unknown section kind {kind!r}", hint="[group], [group:vars], [group:children]")
            inv.group_vars.setdefault(section, {})
            inv.children.setdefault(section, [])
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise BadInputError(f"{where}:{n}: {exc}") from None
        if not words:
            continue
        if kind == "vars":
            key, eq, val = line.partition("=")
            if not eq:
                raise BadInputError(f"{where}:{n}: expected NAME=VALUE in [{section}:vars]")
            inv.group_vars[section][key.strip()] = " ".join(shlex.split(val, comments=True))
        elif kind == "children":
            inv.children[section].append(words[0])
            inv.children.setdefault(words[0], [])
        else:
            hvars = {}
            for w in words[1:]:
                key, eq, val = w.partition("=")
                if not eq:
                    raise BadInputError(f"{where}:{n}: expected NAME=VALUE after the host name, got {w!r}")
                hvars[key] = val
            inv.add_host(section, words[0], hvars)
    return inv.hosts()


def parse_yaml(text: str, where: str = "inventory") -> dict[str, Host]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInputError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{where}: an inventory is a mapping of groups", hint="all: {hosts: {hv1: {...}}}")
    inv = _Inventory()

    def group(name: str, body) -> None:
        body = body or {}
        if not isinstance(body, dict):
            raise BadInputError(f"{where}: group {name} must be a mapping")
        inv.group_vars.setdefault(name, {}).update(body.get("vars") or {})
        inv.children.setdefault(name, [])
        for host, hvars in (body.get("hosts") or {}).items():
            inv.add_host(name, str(host), dict(hvars or {}))
        for child, cbody in (body.get("children") or {}).items():
            inv.children[name].append(child)
            group(child, cbody)

    for name, body in doc.items():
        group(name, body)
        if name != "all":
            inv.children["all"].append(name)
    return inv.hosts()


def load(path: str | Path) -> dict[str, Host]:
    """The hosts of an inventory file, by name (YAML by extension or content, else INI)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read hosts file {p}: {exc.strerror}") from None
    yaml_like = p.suffix in (".yml", ".yaml") or text.lstrip().startswith(("---", "all:"))
    hosts = parse_yaml(text, str(p)) if yaml_like else parse_ini(text, str(p))
    if not hosts:
        raise BadInputError(f"hosts file {p} names no hosts")
    return hosts


def resolve(text: str, hosts: dict[str, Host] | None) -> Host:
    """The host ``text`` names: an inventory name, else an ssh destination (``[user@]host``)."""
    if hosts and text in hosts:
        return hosts[text]
    if hosts is not None and "@" not in text:
        raise NotFoundError(f"no host {text!r} in the hosts file",
                            hint=f"hosts: {', '.join(sorted(hosts)[:10])}; or an ssh destination user@host")
    if not text or text.startswith("-"):
        raise BadInputError(f"{text!r} is not an ssh destination")
    return Host(name=text, destination=text)


def split_host_endpoint(text: str, hosts: dict[str, Host] | None) -> tuple[Host, str] | None:
    """(host, endpoint) for "HOST:ENDPOINT" when HOST is a hosts-file name or a
    ``user@host`` destination; None for a local endpoint (lab node, namespace)."""
    head, sep, rest = text.partition(":")
    if not sep or not rest:
        return None
    if (hosts and head in hosts) or "@" in head:
        return resolve(head, hosts), rest
    return None
