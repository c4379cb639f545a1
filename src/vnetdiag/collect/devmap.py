"""Which namespaces have a device of a given name: the map trace events need.

Trace events name devices but not namespaces. This reads every (selected)
named namespace and the host with ``ip -j -d link`` and ``ip -j netns
list-id`` (so a veth's peer namespace is known), and returns DeviceRefs.
It is kept behind :func:`device_map` so it can switch to the counters issue's
inventory when that lands, without touching the analyses.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from collections.abc import Iterable

from vnetdiag.model.tracing import DeviceRef
from vnetdiag.system import netns


def _ip_json(ns: str, *args: str) -> list[dict]:
    argv = ["ip", "-j"] + (["-n", ns] if ns else []) + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if r.returncode != 0 or not r.stdout.strip():
        return []
    try:
        return json.loads(r.stdout)
    except ValueError:
        return []


def selected_namespaces(patterns: Iterable[str] | None = None) -> list[str]:
    """Named namespaces matching any glob in ``patterns`` (all, plus the host '', if None)."""
    names = list(netns.list_named())
    if not patterns:
        return [""] + names
    pats = list(patterns)
    out = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if any(p in ("", "host") for p in pats):
        out.insert(0, "")
    return out


def device_map(namespaces: Iterable[str] | None = None) -> dict[str, tuple[DeviceRef, ...]]:
    """{device name: every DeviceRef of that name} over ``namespaces`` ('' is the host)."""
    nss = list(namespaces) if namespaces is not None else selected_namespaces()
    raw: dict[str, list[dict]] = {}
    nsids: dict[str, dict[int, str]] = {}
    for ns in nss:
        raw[ns] = _ip_json(ns, "-d", "link", "show")
        nsids[ns] = {int(e["nsid"]): e.get("name", "") for e in _ip_json(ns, "netns", "list-id")
                     if "nsid" in e}
    by_index = {(ns, link.get("ifindex")): link for ns, links in raw.items() for link in links}
    out: dict[str, list[DeviceRef]] = {}
    for ns, links in raw.items():
        names = {link.get("ifindex"): link.get("ifname", "") for link in links}
        for link in links:
            kind = link.get("linkinfo", {}).get("info_kind", "")
            peer_ns = peer_name = None
            if kind == "veth":
                nsid = link.get("link_netnsid")
                peer_ns = ns if nsid is None else nsids[ns].get(int(nsid))
                peer = by_index.get((peer_ns, link.get("link_index"))) if peer_ns is not None else None
                peer_name = peer.get("ifname") if peer else link.get("link")
            master = link.get("master", "")
            if isinstance(master, int):
                master = names.get(master, "")
            ref = DeviceRef(netns=ns, name=link.get("ifname", ""), ifindex=int(link.get("ifindex", 0)),
                            kind=kind, master=master or "", peer_netns=peer_ns, peer_name=peer_name)
            out.setdefault(ref.name, []).append(ref)
    return {k: tuple(v) for k, v in out.items()}
