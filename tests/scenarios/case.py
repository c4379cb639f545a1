"""What a scenario hands the test: where to probe, and the truth.

The truth is the place (namespace, devices, causes) and, after the run, the
kernel's own count of the probe's lost packets: counters of nft rules at both
endpoints (the probe's packets leaving one end and arriving at the other, each
direction), so "lost" is what left and never arrived, whatever dropped it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scenarios.bed import Bed



@dataclass(frozen=True)
class Expect:
    node: str
    """The scenario's short name of the namespace where the probe's packets die."""
    devices: frozenset[str | None]
    """Acceptable devices of the top verdict (None: a namespace-wide verdict, a rule without a device)."""
    causes: frozenset[str]
    exact_count: bool = True
    """The top verdict's probe_packets must equal the meter's lost packets (eBPF backend)."""


@dataclass
class Case:
    name: str
    source: str
    """How diagnose is told A: a namespace name, pid:PID, ..."""
    target: str
    """B with the server's address: NS:ADDRESS."""
    client: str
    server: str
    """Short names of the two endpoint nodes (for the meter)."""
    probe: dict = field(default_factory=dict)
    expect: Expect | None = None
    """None: the path is clean; diagnose must give no verdict."""
    fault_counters: Callable[[], dict[str, int]] = lambda: {}
    """The kernel's own counters of the fault (rule, qdisc, nstat...) after the run."""
    fault_fired: Callable[[dict[str, int]], bool] = lambda c: True
    meter: Meter | None = None


_METER = """
table inet hsmeter {{
  chain pre {{ type filter hook prerouting priority -400; policy accept;
    meta l4proto {proto} th dport {port} counter comment "fwd"
    meta l4proto {proto} th sport {port} counter comment "rev"; }}
  chain post {{ type filter hook postrouting priority 400; policy accept;
    meta l4proto {proto} th dport {port} counter comment "fwd"
    meta l4proto {proto} th sport {port} counter comment "rev"; }}
}}
"""


@dataclass
class Meter:
    """Counts the probe's packets leaving and entering each endpoint."""

    bed: Bed
    client: str
    server: str
    proto: str

    def install(self) -> None:
        for node in (self.client, self.server):
            self.bed.run(node, ["nft", "delete", "table", "inet", "hsmeter"], check=False)
            # The probe server listens on the bed's port (diagnose(port=...)): only
            # the probe's packets carry it (background uses 52xx and ephemeral ports).
            nft(self.bed, node, _METER.format(proto=self.proto, port=self.bed.probe_port))

    def counts(self, node: str) -> dict[tuple[str, str], int]:
        doc = self.bed.json(node, ["nft", "-j", "list", "table", "inet", "hsmeter"])
        out = {}
        for item in doc["nftables"]:
            rule = item.get("rule")
            if rule is None:
                continue
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            out[(rule["chain"], rule["comment"])] = packets
        return out

    def lost(self) -> dict[str, int]:
        """{"forward": n, "reverse": n}: left one end, never reached the other."""
        c, s = self.counts(self.client), self.counts(self.server)
        return {"forward": c[("post", "fwd")] - s[("pre", "fwd")],
                "reverse": s[("post", "rev")] - c[("pre", "rev")],
                "sent": c[("post", "fwd")] + s[("post", "rev")]}


def nft(bed: Bed, node: str, script: str) -> None:
    from vnetdiag.system import nsexec

    nsexec.run(["nft", "-f", "-"], netns=bed.nodes[node].path, input=script)


def nft_rule_packets(bed: Bed, node: str, family: str, table: str) -> int:
    """Packets counted by the counters of an nftables table's rules."""
    doc = bed.json(node, ["nft", "-j", "list", "table", family, table])
    return sum(e["counter"]["packets"] for item in doc["nftables"] if "rule" in item
               for e in item["rule"]["expr"] if "counter" in e)


def iptables_rule_packets(bed: Bed, node: str, chain: str, match: str, table: str = "filter") -> int:
    """Packets counted by the rules of ``chain`` whose line contains ``match``."""
    out = bed.run(node, ["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"]).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[2:] if match in line)


def nstat(bed: Bed, node: str, *names: str) -> dict[str, int]:
    """Absolute values of protocol counters (nstat -az: no history file)."""
    out = bed.run(node, ["nstat", "-az", "--json", *names]).stdout
    import json

    doc = json.loads(out)
    kernel = doc.get("kernel", doc)
    return {k: int(v) for k, v in kernel.items()}


def qdisc_drops(bed: Bed, node: str, dev: str) -> int:
    return sum(q.get("drops", 0) for q in bed.json(node, ["tc", "-s", "-j", "qdisc", "show", "dev", dev]))


def link_stats(bed: Bed, node: str, dev: str) -> dict:
    return bed.json(node, ["ip", "-s", "-j", "link", "show", "dev", dev])[0]["stats64"]
