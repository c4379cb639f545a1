"""Background traffic in a lab, as on a real host: other flows across the same
bridges and tunnels, and IPv6 multicast (neighbour discovery, MLD) on every
guest link, while the probe or a diagnosis runs.

    lab.start_background()     # journaled: lab down (or cleanup) stops it
    ...
    lab.stop_background()

Every guest pings every other guest (small packets, 20 per second: a tenant's
chatter over the overlay), and with IPv6 on pings the all-nodes group
ff02::1 on its link (IPv6 multicast that every neighbour receives). None of it
is the probe's: it uses ICMP, the probe TCP or UDP.
"""

from __future__ import annotations

import itertools
import subprocess

from vnetdiag.system import proc
from vnetdiag.system.nsexec import argv_in, need
from vnetdiag.system.undo import Journal, KillProcess

INTERVAL_S = 0.05
"""Between a pinger's packets (ping's -i; 0.05 s needs no privilege beyond root's)."""
SIZE_BYTES = 200


def flows(lab) -> list[tuple[str, list[str]]]:
    """(node, argv) of every background sender."""
    need("ping", "iputils-ping")
    out = []
    guests = [g for g in lab.guests if not lab.spec.is_vm(g)]
    for a, b in itertools.permutations(guests, 2):
        out.append((a, ["ping", "-q", "-n", "-i", str(INTERVAL_S), "-s", str(SIZE_BYTES), lab.ip(b)]))
    if lab.spec.ipv6:
        for g in guests:
            dev = next(ep.name for ep in lab.spec.endpoints() if ep.node == g)
            out.append((g, ["ping", "-6", "-q", "-n", "-i", "0.5", f"ff02::1%{dev}"]))
    return out


def start(lab, journal: Journal) -> list[int]:
    """Start every sender, each recorded in ``journal`` before it runs."""
    pids = []
    for node, argv in flows(lab):
        # The shell waits for one line before it execs the sender: its pid (kept
        # across the exec) is journaled first, so a SIGKILL never leaks a pinger.
        p = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh",
                              *argv_in(f"/run/netns/{lab.netns(node)}", argv)],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        journal.record(KillProcess(pid=p.pid, start_ticks=proc.start_ticks(p.pid) or 0))
        p.stdin.write(b"go\n")
        p.stdin.close()
        pids.append(p.pid)
    return pids
