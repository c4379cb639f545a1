"""The command-line interface: the only layer that prints and chooses exit codes.

Commands are listed once, in ``COMMANDS``; each module is imported only when its
command runs, so ``vnetdiag lab down`` does not pay for numpy or rich tables.
A command module provides ``configure(parser)`` and ``run(args, out) -> int``.
"""

from __future__ import annotations

# name -> (module, one-line summary). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vnetdiag.cli.demo", "build the lab, inject a fault, show what vnetdiag finds, tear down"),
    "diagnose": ("vnetdiag.cli.diagnose", "probe A -> B, watch counters and kernel drops, rank the causes"),
    "lab": ("vnetdiag.cli.lab", "build and control a lab of real namespaces with injectable faults"),
    "drops": ("vnetdiag.cli.drops", "live table of kernel drops by namespace, device, reason and location"),
    "trace": ("vnetdiag.cli.trace", "record kernel packet events, analyse a recording or an LTTng trace, export CTF"),
    "counters": ("vnetdiag.cli.counters", "drop, error and queue counters of every interface in every namespace"),
    "inventory": ("vnetdiag.cli.inventory", "every interface in every namespace and how it is built"),
    "pcap": ("vnetdiag.cli.pcap", "conversations, retransmissions and their timer signatures in a capture file"),
    "probe": ("vnetdiag.cli.probe", "request/response latency with many streams, log-scale histograms and tail signatures"),
    "handshake": ("vnetdiag.cli.handshake", "server-less round trips a peer's kernel answers: TCP SYN, ICMP echo"),
    "serve": ("vnetdiag.cli.serve", "the probe server: bounded, token-guarded, loopback unless told otherwise"),
    "topology": ("vnetdiag.cli.topology", "namespaces, interfaces and how they connect: tree, dot, html, json, diff"),
    "path": ("vnetdiag.cli.path", "the devices a packet from FROM to TO crosses, both directions"),
    "compare": ("vnetdiag.cli.compare", "probe several paths interleaved: latency, loss and build side by side"),
    "watch": ("vnetdiag.cli.watch", "detect TX stalls (of devices and of guests), drop anomalies, conntrack "
                                    "pressure, link changes; act; journal"),
    "export": ("vnetdiag.cli.export", "serve every namespace's counters as Prometheus /metrics"),
    "fleet": ("vnetdiag.cli.fleet", "rank drop places across hosts from Prometheus (fleet top)"),
    "agent": ("vnetdiag.cli.agent", "answer the fleet protocol on stdin/stdout (the coordinator starts it over ssh)"),
    "cleanup": ("vnetdiag.cli.cleanup", "remove everything vnetdiag left in the kernel"),
}
