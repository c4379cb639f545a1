"""Kernel drop reasons as Prometheus counters, from the eBPF tracer's in-kernel counts.

    vnetdiag_kernel_drops_total{netns="vm-a", device="tap3", reason="NETFILTER_DROP"} 187

bpftrace keeps one counter per (namespace inode, ifindex, reason, location) in
a kernel map and prints it every second; each scrape renders the latest print,
summed over the dropping function (a label whose values would multiply the
series without helping to rank places). The counts are cumulative since the
exporter started, so ``rate()`` works as for any counter; a restart is a counter
reset. Devices and namespaces are labels, looked up when first seen; the
namespace filter keeps a host's exporter to its own namespaces (on a kernel
shared by several tenants, or by the simulated hosts of the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vnetdiag.model.drops import DropTally

METRIC = "vnetdiag_kernel_drops"

TallySource = Callable[[], tuple[tuple[DropTally, ...], int]]
"""() -> (cumulative tallies with device/netns labels, records lost)."""


def families(tallies: Iterable[DropTally], *, keep: Callable[[int], bool] | None = None) -> list:
    """The metric families of one print of the kernel's counts."""
    fam = CounterMetricFamily(METRIC, "Packets the kernel dropped (skb:kfree_skb), by namespace, device and reason",
                              labels=["netns", "device", "reason"])
    summed: dict[tuple[str, str, str], int] = {}
    for t in tallies:
        if keep is not None and not keep(t.netns_inode):
            continue
        key = (t.netns or f"netns:{t.netns_inode}", t.device or "", t.reason)
        summed[key] = summed.get(key, 0) + t.count
    for key, n in sorted(summed.items()):
        fam.add_metric(list(key), n)
    return [fam]


class DropsCollector:
    """prometheus_client custom collector over a running eBPF drop source."""

    def __init__(self, source: TallySource, *, keep: Callable[[int], bool] | None = None) -> None:
        self.source = source
        self.keep = keep

    def collect(self):
        tallies, lost = self.source()
        yield from families(tallies, keep=self.keep)
        yield GaugeMetricFamily("vnetdiag_kernel_drops_places", "Places (netns, device, reason) with drops counted",
                                value=len({(t.netns_inode, t.ifindex, t.reason) for t in tallies
                                           if self.keep is None or self.keep(t.netns_inode)}))


def ebpf_source(src) -> TallySource:
    """Labelled cumulative tallies of a started ``collect.ebpf_drops.EbpfDropSource``;
    labels are looked up once per (inode, ifindex) seen, not per scrape."""
    import dataclasses

    from vnetdiag.collect.ebpf_drops import label_tallies

    labels: dict[tuple[int, int], tuple[str, str | None]] = {}

    def source():
        raw, lost = src.counts()
        new = [t for t in raw if (t.netns_inode, t.ifindex) not in labels]
        if new:
            for t in label_tallies(new, ()):
                labels[(t.netns_inode, t.ifindex)] = (t.device, t.netns)
        out = tuple(dataclasses.replace(t, device=labels[(t.netns_inode, t.ifindex)][0],
                                        netns=labels[(t.netns_inode, t.ifindex)][1]) for t in raw)
        return out, lost
    return source


def in_scope(patterns: Iterable[str]) -> Callable[[int], bool] | None:
    """Whether a namespace inode is one of ``patterns`` (--netns forms), or None for all.
    New namespaces come and go: an inode is looked up once, when first seen."""
    from vnetdiag.fleet.agent import Scope

    scope = Scope(tuple(patterns))
    if scope.only is None:
        return None
    inodes: dict[int, bool] = {}

    def keep(inode: int) -> bool:
        if inode not in inodes:
            inodes.update({n.inode: True for n in scope.namespaces()})
            inodes.setdefault(inode, False)
        return inodes[inode]
    return keep


def serve(registry, src, patterns: Iterable[str]) -> None:
    """Register the drop counts of a started eBPF source on a /metrics registry."""
    registry.register(DropsCollector(ebpf_source(src), keep=in_scope(patterns)))
