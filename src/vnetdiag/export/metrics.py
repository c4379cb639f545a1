"""Prometheus metric families from one counters snapshot (and the watch state).

Names are node_exporter's tails under our prefix, so dashboards and rules
written for node_exporter translate by changing ``node_`` to ``vnetdiag_``
and adding the ``netns`` label: vnetdiag_network_receive_drop_total{netns,
device}, vnetdiag_qdisc_drops_total{netns,device,kind,handle,parent},
vnetdiag_softnet_dropped_total{cpu}, vnetdiag_nf_conntrack_entries{netns}.
Queue numbers are labels, never parts of names. This module builds families
only; it reads nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.namespaces import holder_label, inode_label
from vnetdiag.model.watch import Alert

P = "vnetdiag_"

# struct rtnl_link_stats64 field -> node_exporter's /proc/net/dev name tail.
NODE_TAILS = {
    "rx_bytes": "receive_bytes", "rx_packets": "receive_packets", "rx_errors": "receive_errs",
    "rx_dropped": "receive_drop", "rx_fifo_errors": "receive_fifo", "rx_frame_errors": "receive_frame",
    "rx_compressed": "receive_compressed", "multicast": "receive_multicast", "rx_nohandler": "receive_nohandler",
    "tx_bytes": "transmit_bytes", "tx_packets": "transmit_packets", "tx_errors": "transmit_errs",
    "tx_dropped": "transmit_drop", "tx_fifo_errors": "transmit_fifo", "collisions": "transmit_colls",
    "tx_carrier_errors": "transmit_carrier", "tx_compressed": "transmit_compressed",
}
# node_exporter's default netstat field filter, plus what our detectors watch.
DEFAULT_NETSTAT = (r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
                   r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPBacklogDrop|TCPRcvQDrop)"
                   r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
                   r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$")
_SOFTNET = (("processed", "processed"), ("dropped", "dropped"), ("time_squeeze", "times_squeezed"),
            ("received_rps", "received_rps"), ("flow_limit_count", "flow_limit_count"))
# The SNMP MIB objects (RFC 4022, RFC 4293) that are settings or gauges; every
# other /proc/net/snmp and netstat field counts up, so it is a counter (``_total``)
# here and rules may take its rate(). node_exporter leaves them all untyped.
NETSTAT_GAUGES = frozenset({"Ip_Forwarding", "Ip_DefaultTTL", "Tcp_RtoAlgorithm", "Tcp_RtoMin", "Tcp_RtoMax",
                            "Tcp_MaxConn", "Tcp_CurrEstab"})
_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    devices_include: tuple[str, ...] = ()
    devices_exclude: tuple[str, ...] = ()
    netstat_fields: str | None = None
    driver_stats: bool = False
    """Also export ``ethtool -S`` counters (per queue with a queue label): many
    series per device (a veth has ~20), so off unless asked for."""

    def device_ok(self, name: str) -> bool:
        if self.devices_include and not any(fnmatch.fnmatchcase(name, g) for g in self.devices_include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in self.devices_exclude)


@dataclass(kw_only=True, slots=True)
class WatchView:
    """What the watch loop shares with the exporter."""

    active: list[Alert] = field(default_factory=list)
    transitions_total: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(detector, kind, change) -> count."""
    actions_total: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(detector, action, status) -> count."""
    cycles_total: int = 0
    cycle_duration_s: float = 0.0
    detectors: tuple[str, ...] = ()


def snapshot_families(snap: CounterSnapshot, filters: Filters = Filters()) -> list[Metric]:
    names = {n.inode: n.label for n in snap.namespaces}
    by_ref = {i.interface.ref: i.interface for i in snap.interfaces}
    fam: dict[str, Metric] = {}
    # Series carry the namespace's label (unique among the namespaces of one
    # scrape); netns_info maps it to the identity (netns_inode) and to a holder
    # label that survives container restarts, for dashboards to join on.
    ilabels = ["netns", "device"]
    nslabels = ["netns"]

    def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        m = fam.get(name)
        if m is None:
            m = fam[name] = CounterMetricFamily(P + name, doc, labels=labels)
        return m

    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        m = fam.get(name)
        if m is None:
            m = fam[name] = GaugeMetricFamily(P + name, doc, labels=labels)
        return m

    ns_info = gauge("netns_info", "A network namespace (value 1): its label, inode, and the command of a process "
                    "holding an unnamed one (stable across container restarts)",
                    ["netns", "netns_inode", "inode", "host", "holder"])
    for n in snap.namespaces:
        ns_info.add_metric([n.label, str(n.inode), str(n.inode), "1" if n.is_host else "0", holder_label(n)], 1)
    info = gauge("network_info", "An interface (value 1) and how it is built: kind, driver, master, peer",
                 ["netns", "device", "ifindex", "kind", "driver", "master", "peer_netns", "peer_device",
                  "operstate", "address"])
    for ic in snap.interfaces:
        i = ic.interface
        if not filters.device_ok(i.name):
            continue
        ns = i.netns_name or names.get(i.ref.netns_inode)
        lv = [ns, i.name]
        master = ""
        if i.master_ifindex:
            m = by_ref.get(type(i.ref)(netns_inode=i.ref.netns_inode, ifindex=i.master_ifindex))
            master = m.name if m else str(i.master_ifindex)
        peer_ns = peer_dev = ""
        if i.link is not None:
            p = by_ref.get(i.link)
            peer_ns = names.get(i.link.netns_inode) or inode_label(i.link.netns_inode)
            peer_dev = p.name if p else str(i.link.ifindex)
        info.add_metric([ns, i.name, str(i.ref.ifindex), i.kind or "", i.driver or "", master, peer_ns, peer_dev,
                         i.operstate, i.mac or ""], 1)
        gauge("network_up", "1 if operstate is up", ilabels).add_metric(lv, 1 if i.operstate == "up" else 0)
        if i.carrier is not None:
            gauge("network_carrier", "Carrier present (1) or not (0)", ilabels).add_metric(lv, 1 if i.carrier else 0)
        if i.carrier_changes is not None:
            counter("network_carrier_changes", "Carrier changes", ilabels).add_metric(lv, i.carrier_changes)
        gauge("network_mtu_bytes", "MTU", ilabels).add_metric(lv, i.mtu)
        gauge("network_transmit_queue_length", "txqueuelen", ilabels).add_metric(lv, i.txqlen)
        for key, value in ic.stats.items():
            tail = NODE_TAILS.get(key) or key
            counter(f"network_{tail}", f"stats64 {key}", ilabels).add_metric(lv, value)
        if filters.driver_stats:
            for key, value in ic.driver_stats.items():
                counter("network_driver_stat", "ethtool -S counter (not per queue)", ilabels + ["stat"]).add_metric(
                    lv + [key], value)
            for q in ic.queues:
                for key, value in q.counters.items():
                    counter("network_queue_stat", "ethtool -S per-queue counter; queue number as a label",
                            ilabels + ["direction", "queue", "stat"]).add_metric(
                        lv + [q.direction, str(q.queue), key], value)
        qlabels = ilabels + ["kind", "handle", "parent"]
        for q in ic.qdiscs:
            # noqueue never queues: its counters stay zero, so it is left out.
            if q.is_class or q.kind == "noqueue":
                continue
            ql = lv + [q.kind, q.handle, q.parent]
            counter("qdisc_bytes", "Bytes sent by the qdisc", qlabels).add_metric(ql, q.bytes)
            counter("qdisc_packets", "Packets sent by the qdisc", qlabels).add_metric(ql, q.packets)
            counter("qdisc_drops", "Packets dropped by the qdisc", qlabels).add_metric(ql, q.drops)
            counter("qdisc_requeues", "Requeues", qlabels).add_metric(ql, q.requeues)
            counter("qdisc_overlimits", "Overlimits", qlabels).add_metric(ql, q.overlimits)
            gauge("qdisc_current_queue_length", "Packets in the queue now (backlog, packets)", qlabels).add_metric(
                ql, q.backlog_packets)
            gauge("qdisc_backlog", "Bytes in the queue now", qlabels).add_metric(ql, q.backlog_bytes)
    netstat = re.compile(filters.netstat_fields or DEFAULT_NETSTAT)
    for s in snap.netns_stats:
        ns = names.get(s.netns_inode) or inode_label(s.netns_inode)
        nsv = [ns]
        for section, values in s.snmp.items():
            for key, value in values.items():
                full = f"{section}_{key}"
                if netstat.match(full):
                    kind = gauge if full in NETSTAT_GAUGES else counter
                    kind(f"netstat_{_NAME_OK.sub('_', full)}", f"/proc/net/snmp|netstat {section} {key}",
                         nslabels).add_metric(nsv, value)
        ct = s.conntrack
        if ct is not None:
            if ct.count is not None:
                gauge("nf_conntrack_entries", "Connections in the conntrack table", nslabels).add_metric(nsv, ct.count)
            if ct.limit is not None:
                gauge("nf_conntrack_entries_limit", "Size of the conntrack table (nf_conntrack_max)",
                      nslabels).add_metric(nsv, ct.limit)
            sums: dict[str, int] = {}
            for row in ct.per_cpu:
                for k, v in row.items():
                    if k != "entries":  # a gauge, and the same number as nf_conntrack_count
                        sums[k] = sums.get(k, 0) + v
            for k, v in sums.items():
                # Event counts (found, drop, insert_failed, ...): counters, so rules take increase() of them.
                counter(f"nf_conntrack_stat_{_NAME_OK.sub('_', k)}",
                        f"/proc/net/stat/nf_conntrack {k}, summed over CPUs", nslabels).add_metric(nsv, v)
    for c in snap.softnet:
        for attr, tail in _SOFTNET:
            counter(f"softnet_{tail}", f"/proc/net/softnet_stat {attr}", ["cpu"]).add_metric([str(c.cpu)],
                                                                                          getattr(c, attr))
        if c.backlog_len is not None:
            gauge("softnet_backlog_len", "Packets in the CPU's backlog now (node_exporter's name)", ["cpu"]).add_metric(
                [str(c.cpu)], c.backlog_len)
    gauge("snapshot_problems", "Parts of the last snapshot that could not be read", []).add_metric(
        [], len(snap.problems))
    success = gauge("scrape_netns_success", "1 if this namespace's counters were read in this scrape, 0 if a "
                    "namespace-wide read failed (its problem is in the log); like node_scrape_collector_success",
                    nslabels)
    for label, ok in netns_success(snap).items():
        success.add_metric([label], 1 if ok else 0)
    gauge("snapshot_duration_seconds", "Time to read the counters snapshot", []).add_metric([], snap.duration_ms / 1000)
    return list(fam.values())


def netns_success(snap: CounterSnapshot) -> dict[str, bool]:
    """Namespace label -> whether all of it was read. A problem whose ``where``
    is a namespace (not "ns/device", which loses one device's driver counters)
    failed that namespace; one that could not be entered has no other series."""
    failed = {p.where for p in snap.problems if "/" not in p.where}
    out = {n.label: n.label not in failed for n in snap.namespaces}
    for where in failed:
        out.setdefault(where, False)
    return out


def build_families() -> list[Metric]:
    """``vnetdiag_build_info``: which vnetdiag (on which Python) serves these metrics,
    labelled as Prometheus' own exporters do (version, goversion -> pythonversion)."""
    import platform

    from vnetdiag import __version__

    info = GaugeMetricFamily(P + "build_info", "A constant 1 labelled with the version of vnetdiag serving these "
                             "metrics and the Python it runs on", labels=["version", "pythonversion"])
    info.add_metric([__version__, platform.python_version()], 1)
    return [info]


def watch_families(view: WatchView) -> Iterable[Metric]:
    active = GaugeMetricFamily(P + "watch_alert_active", "An active watch alert (value 1)",
                               labels=["detector", "kind", "subject", "severity", "netns", "device", "queue"])
    for a in view.active:
        active.add_metric([a.detector, a.kind, a.subject, a.severity, a.netns or "", a.device or "",
                           "" if a.queue is None else str(a.queue)], 1)
    yield active
    det = GaugeMetricFamily(P + "watch_detector_active_alerts", "Active alerts per detector", labels=["detector"])
    counts = {d: 0 for d in view.detectors}
    for a in view.active:
        counts[a.detector] = counts.get(a.detector, 0) + 1
    for d, n in counts.items():
        det.add_metric([d], n)
    yield det
    tr = CounterMetricFamily(P + "watch_transitions", "Alert transitions", labels=["detector", "kind", "change"])
    for (d, k, c), n in view.transitions_total.items():
        tr.add_metric([d, k, c], n)
    yield tr
    ac = CounterMetricFamily(P + "watch_actions", "Recovery action attempts", labels=["detector", "action", "status"])
    for (d, k, s), n in view.actions_total.items():
        ac.add_metric([d, k, s], n)
    yield ac
    yield CounterMetricFamily(P + "watch_cycles", "Watch cycles run", value=view.cycles_total)
    yield GaugeMetricFamily(P + "watch_cycle_duration_seconds", "Duration of the last watch cycle",
                            value=view.cycle_duration_s)
