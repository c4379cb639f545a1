"""Diagnose towards a far end: a target vnetdiag cannot enter, so its own probe
server cannot run there (a QEMU guest, any address no namespace here owns).

``target`` says whether ``--to`` names one: a lab VM node ("vm1", "LAB:vm1"),
a bare address no namespace owns, or ``NS:ADDRESS`` where NS does not own
ADDRESS (a VM's address given with its hypervisor's namespace). diagnose then
probes with server-less handshakes (``probe/handshake_window.py``), traces the
handshakes' packets as the probe's flows, and reads the path one way (the
guest's own routes cannot be read; the way back is the way there reversed).
"""

from __future__ import annotations

import ipaddress

from vnetdiag.errors import NotFoundError
from vnetdiag.naming import Endpoint, endpoint

CLOSED_PORT = 9
"""tcp-syn's default port: closed on a bare guest, so its kernel answers each
SYN with a RST and keeps no state (the lab guests' echo listens on 7)."""
ATTEMPT_TIMEOUT_S = {"tcp-syn": 3.0, "icmp-echo": 1.0}
"""tcp-syn: room for one SYN retransmission (at 1 s) before an attempt counts as
unanswered; an echo is never retransmitted, and its one stream must not wait long."""
ATTEMPT_INTERVAL_S = 0.02
"""Per stream: 16 streams make 800 handshakes a second, which a TCG guest answers."""


def target(text: str, a: Endpoint, collector) -> tuple[Endpoint, bool]:
    """(B, far): B as an endpoint, and whether it is a far end."""
    vm = _lab_vm(text)
    if vm is not None:
        return vm, True
    bare = _address(text)
    if bare is None:
        b = endpoint(text)
        typed = b.lab_node is None or ":" in text  # an address the user gave, not a lab node's own
        if not (b.address and typed) or _owners(collector, b.address, only=b.ns.inode):
            return b, False
        return b, True
    owners = _owners(collector, bare)
    if len(owners) == 1:
        return endpoint(f"netns:{owners[0]}:{bare}"), False
    # No namespace here owns it: the path walk starts from A and ends where it leaves what is observable.
    return Endpoint(text=text, ns=a.ns, address=bare), True


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _owners(collector, address: str, only: int | None = None) -> list[int]:
    """Inodes of the namespaces that have ``address`` on one of their interfaces."""
    from vnetdiag.topology import discover

    topo = discover(collector.snapshot(), collector.pool)
    return sorted({x.ref.netns_inode for x in topo.addresses
                   if x.address == address and (only is None or x.ref.netns_inode == only)})


def guest_server_port(text: str) -> int | None:
    """The port of vnetdiag's probe server in a lab VM's guest (``serve = true``), else None."""
    from vnetdiag.naming import _lab_node

    hit = _lab_node(text)
    if hit is None:
        return None
    lab, node = hit
    return next((v.get("serve_port") for v in lab.vms if v["node"] == node), None)


def _lab_vm(text: str) -> Endpoint | None:
    """A lab VM node as an endpoint: its address, and the namespace of the
    hypervisor node that holds its (first) tap or macvtap."""
    from vnetdiag.naming import _lab_node, namespace

    hit = _lab_node(text)
    if hit is None:
        return None
    lab, node = hit
    if not lab.spec.is_vm(node):
        return None
    holders = [t.node for t in (*lab.spec.taps, *lab.spec.macvtaps) if t.guest.node == node]
    if not holders:
        raise NotFoundError(f"lab VM {node} has no tap or macvtap", hint="vnetdiag lab status lists its NICs")
    return Endpoint(text=text, ns=namespace(lab.netns(holders[0])), address=lab.ip(node), lab_node=node)
