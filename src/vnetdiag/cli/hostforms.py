"""HOST:NAMESPACE forms for path, counters, drops and topology: the same agents as diagnose.

    vnetdiag counters --hosts hosts.ini --netns hv2:'vm-*'
    vnetdiag topology --hosts hosts.ini --netns hv2:'*'
    vnetdiag path --hosts hosts.ini hv1:vm1 hv3:vm3
    vnetdiag drops --hosts hosts.ini --netns hv2:'*' --duration 10

HOST is a name of the ``--hosts`` inventory or an ssh destination ``user@host``
(fleet/hosts.py). Each command groups its namespace words by host, opens one
agent per host through the coordinator (fleet/coordinator.py: ssh, hello,
teardown, the one-line errors), asks each the operation it needs, and renders
the records as it does locally; the output names the host. One place, so the
four commands say the same things in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vnetdiag.errors import UsageError


def add_option(parser) -> None:
    parser.add_argument("--hosts", metavar="FILE",
                        help="an Ansible inventory (INI or YAML): namespaces may then be HOST:NAMESPACE "
                             "(also user@host:NAMESPACE without it)")


def by_host(specs: Sequence[str], hosts_file: str | None) -> dict[str, tuple[object, list[str]]] | None:
    """{host name: (Host, [what follows HOST: in each spec])}, or None when no spec names a host.

    Local and host forms are not mixed in one command: the local part would
    read this machine's kernel and the rest another's, in one table."""
    from vnetdiag.fleet.hosts import load, split_host_endpoint

    inventory = load(hosts_file) if hosts_file else None
    split = [(s, split_host_endpoint(s, inventory)) for s in specs]
    remote = [(s, hit) for s, hit in split if hit is not None]
    if not remote:
        if hosts_file and specs:
            raise UsageError(f"--hosts given, but {specs[0]} does not name one of its hosts",
                             hint="write HOST:NAMESPACE with HOST from the hosts file")
        return None
    if len(remote) != len(split):
        local = next(s for s, hit in split if hit is None)
        raise UsageError(f"{local} is on this machine, the others on hosts: one or the other in one command",
                         hint="prefix it with its host (HOST:NAMESPACE), or run the command twice")
    out: dict[str, tuple[object, list[str]]] = {}
    for _spec, (host, rest) in remote:
        out.setdefault(host.name, (host, []))[1].append(rest)
    return out


def ask(groups: dict[str, tuple[object, list[str]]], op: str, args_of: Callable[[list[str]], dict],
        record: type | None = None, *, during: Callable[[object], None] | None = None) -> dict[str, object]:
    """``op`` on every host's agent at once, with ``args_of(its namespace words)``;
    each answer as ``record`` (``model.plain``), by host name, in the order given.
    ``during(fleet)`` runs after the agents said hello and before ``op`` (a window)."""
    from vnetdiag.fleet.coordinator import Fleet
    from vnetdiag.model.plain import from_plain

    with Fleet([host for host, _ in groups.values()], clock=False) as fleet:
        if during is not None:
            during(fleet)
        plain = fleet.call_all(op, list(groups), args_of=lambda name: args_of(groups[name][1]))
    return {name: from_plain(record, plain[name]) if record is not None else plain[name] for name in groups}


class RemoteSnapshots:
    """``snapshot()`` of one host's namespaces through its agent, on this machine's
    monotonic clock (moved by the agent's measured offset), so that code written
    for a local ``Collector`` (the counters watch) runs on it unchanged."""

    def __init__(self, fleet, name: str, specs: list[str]) -> None:
        self.fleet, self.name, self.specs = fleet, name, specs

    def snapshot(self):
        import dataclasses

        from vnetdiag.model.fleet import HostSnapshot
        from vnetdiag.model.plain import from_plain

        snap = from_plain(HostSnapshot, self.fleet.call(self.name, "snapshot", netns=self.specs, rules=False)).snapshot
        offset_s = self.fleet.offsets[self.name].offset_ns / 1e9
        return dataclasses.replace(snap, taken_monotonic_s=snap.taken_monotonic_s - offset_s)


def document(docs: dict[str, dict]) -> dict:
    """One host: its document with ``"host"``; several: ``vnetdiag.hosts/1`` listing them."""
    named = [{**doc, "host": name} for name, doc in docs.items()]
    return named[0] if len(named) == 1 else {"schema": "vnetdiag.hosts/1", "documents": named}


def heading(out, name: str) -> None:
    """The line naming the host before its output."""
    out.console.print(f"host {name}", markup=False, highlight=False)


def check_matched(groups: dict, matched: dict[str, bool]) -> None:
    """A usage error for a host where none of its namespace words matched anything in the agent's scope."""
    for name, ok in matched.items():
        if not ok:
            host, specs = groups[name]
            scope = f" (its scope: {', '.join(host.netns)})" if host.netns else ""
            raise UsageError(f"{name}: no namespace matches {', '.join(specs)}{scope}",
                             hint=f"list them with: vnetdiag topology --netns {name}:'*'")


def one_host(groups: dict, what: str) -> tuple[str, object, list[str]]:
    """(name, Host, namespace words) when ``groups`` is one host; else a usage error."""
    if len(groups) != 1:
        raise UsageError(f"{what} reads one host at a time, not {', '.join(groups)}",
                         hint="run it once per host")
    ((name, (host, specs)),) = groups.items()
    return name, host, specs
