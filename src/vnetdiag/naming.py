"""Naming what the user means: one resolver for namespaces and endpoints.

Every command that takes a namespace (``--netns``, ``--from``/``--to``, ``path``
endpoints, ``probe --netns``) resolves it here, so the same forms work
everywhere: the forms of ``model.namespaces.FORMS_HELP`` and, on top of them,
the node names of a lab that is up ("vm1", or "LAB:vm1" for a lab other than
the default). The result is a ``Namespace`` record whose inode is the identity;
the label is for people.

    from vnetdiag.naming import namespace, endpoint
    namespace("pid:26690").inode
    endpoint("/proc/26693/ns/net:10.0.0.2").address
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vnetdiag.errors import NotFoundError, UsageError, VnetdiagError
from vnetdiag.model.namespaces import Namespace, split_endpoint
from vnetdiag.system import netns as netns_mod


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One end of a probe or a path: a namespace and (perhaps) an address in it."""

    text: str
    """What the user typed."""
    ns: Namespace
    address: str | None
    """None: take the namespace's first global address from the topology."""
    lab_node: str | None = None
    """The lab node this names, when it named one."""

    @property
    def label(self) -> str:
        return self.lab_node or self.ns.label


def labs() -> Iterator:
    from vnetdiag import lab as lab_mod

    # The default lab first, so "vm1" means the lab a user is most likely looking at.
    for prefix in sorted(lab_mod.list_labs(), key=lambda p: p != lab_mod.default_prefix()):
        try:
            yield lab_mod.attach(prefix)
        except VnetdiagError:
            continue


def _lab_node(text: str):
    """(lab, node) for "vm1" or "LAB:vm1" of a lab that is up, else None."""
    prefix, sep, node = text.rpartition(":")
    for lab in labs():
        if sep and prefix != lab.prefix:
            continue
        name = node if sep else text
        if any(n.name == name for n in lab.spec.nodes):
            return lab, name
    return None


def namespace(text: str, namespaces: Sequence[Namespace] | None = None) -> Namespace:
    """The one namespace ``text`` names (any form, or a lab node)."""
    return _namespace(text, namespaces)[0]


def _namespace(text: str, namespaces: Sequence[Namespace] | None) -> tuple[Namespace, object | None]:
    pool = list(namespaces) if namespaces is not None else None
    if pool is None:
        from vnetdiag.system.nspool import enumerate_namespaces

        pool = enumerate_namespaces()
    got = netns_mod.find(text, pool)
    if len(got) == 1:
        return got[0], None
    if not got:
        hit = _lab_node(text)
        if hit is not None:
            lab, node = hit
            return netns_mod.find_one(lab.netns(node), pool), hit
        exc = netns_mod.not_found(text, pool)
        nodes = [f"{lab.prefix}:{n.name}" for lab in labs() for n in lab.spec.nodes]
        if nodes:
            raise NotFoundError(exc.message, hint=f"{exc.hint}; or a lab node: {', '.join(nodes[:8])}")
        raise exc
    return netns_mod.find_one(text, pool), None  # several: find_one says which


def namespaces(patterns: Sequence[str] | None, pool: Sequence[Namespace]) -> list[Namespace]:
    """The namespaces any of ``patterns`` names (exact names, globs, every form),
    in ``pool``'s order; all of them for None. A pattern that matches nothing is
    a NotFoundError: a filter that silently matches nothing would read as clean."""
    if not patterns:
        return list(pool)
    wanted: set[int] = set()
    for p in patterns:
        got = netns_mod.find(p, pool)
        if not got:
            hit = _lab_node(p)
            if hit is None:
                raise netns_mod.not_found(p, pool)
            got = netns_mod.find(hit[0].netns(hit[1]), pool)
        wanted.update(n.inode for n in got)
    return [n for n in pool if n.inode in wanted]


def namespace_filter(patterns: Sequence[str] | None, *, must_exist: bool = True):
    """``system.netns.matcher`` with lab node names ("vm1") taken as their
    namespaces. With ``must_exist``, a pattern that names nothing now is a
    NotFoundError with the closest candidates (a watch passes False: the
    namespaces it waits for may come later)."""
    if not patterns:
        return None
    from vnetdiag.system.nspool import enumerate_namespaces

    pool = enumerate_namespaces()
    out = []
    for p in patterns:
        if not netns_mod.find(p, pool):
            hit = _lab_node(p)
            if hit is not None:
                p = hit[0].netns(hit[1])
            elif must_exist:
                raise netns_mod.not_found(p, pool)
        out.append(p)
    return netns_mod.matcher(out)


def endpoint(text: str, namespaces: Sequence[Namespace] | None = None) -> Endpoint:
    """"NS" or "NS:ADDRESS" (NS in any form; a lab node brings its own address)."""
    hit = _lab_node(text) if ":" in text else None  # "LAB:NODE" of a lab that is up
    if hit is not None:
        ns_text, address = hit[0].netns(hit[1]), None
    else:
        try:
            ns_text, address = split_endpoint(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    ns, found = _namespace(ns_text, namespaces)
    hit = hit or found
    node = None
    if hit is not None:
        lab, node = hit
        address = address or lab.ip(node)
    return Endpoint(text=text, ns=ns, address=address, lab_node=node)
