"""One snapshot of every interface, queue and protocol counter in every namespace.

Data flow per namespace handle (system/nspool.py): one RTM_GETLINK dump (the
inventory and stats64 in the same messages), one RTM_GETQDISC dump, class dumps
only for devices with a configured qdisc, ethtool -S per device, then the
namespace's /proc/net files read through descriptors opened inside it. Failures
are collected as ``Problem`` records; the snapshot goes on.
"""

from __future__ import annotations

import errno as _errno
import gc
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from vnetdiag.collect import links as links_mod
from vnetdiag.collect import procnet, tc
from vnetdiag.errors import VnetdiagError
from vnetdiag.model.counters import (
    ConntrackStats, CounterSnapshot, InterfaceCounters, NetnsStats, Problem, QdiscCounters, QueueCounters,
)
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import IfRef, Namespace
from vnetdiag.system import ethtool, rtnl
from vnetdiag.system.nspool import NetlinkPool, NsHandle

# Per-queue driver statistic names, as drivers spell them: rx_queue_0_xdp_packets
# (veth, virtio, ixgbe), rx0_drops (virtio, mlx5), tx-0.tx_packets (i40e).
_QUEUE_NAME = (re.compile(r"^(rx|tx)_queue_(\d+)_(.+)$"), re.compile(r"^(rx|tx)(\d+)_(.+)$"),
               re.compile(r"^(rx|tx)-(\d+)\.(.+)$"))


def split_queue_name(name: str) -> tuple[str, int, str] | None:
    """("rx", 0, "xdp_packets") for a per-queue statistic name, else None."""
    for pattern in _QUEUE_NAME:
        m = pattern.match(name)
        if m:
            return m.group(1), int(m.group(2)), m.group(3)
    return None


@dataclass(slots=True)
class _NsRead:
    handle: NsHandle
    links: list[links_mod.RawLink]
    qdiscs: dict[int, list[QdiscCounters]]


class Collector:
    """Takes snapshots; keeps its namespace handles and per-device caches open
    between them. ``only`` filters namespaces (True = collect)."""

    def __init__(self, pool: NetlinkPool | None = None, *, only: Callable[[Namespace], bool] | None = None,
                 driver_stats: bool = True, details: bool = True) -> None:
        self.pool = pool or NetlinkPool()
        self._own_pool = pool is None
        self.only = only
        self.driver_stats = driver_stats
        self.details = details
        """Driver name and offload features (read once per device, then cached)."""

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def snapshot(self) -> CounterSnapshot:
        t0 = time.monotonic()
        wall = time.time()
        # Thousands of short-lived objects: a cyclic GC pass in the middle only costs time.
        gc_was = gc.isenabled()
        gc.disable()
        try:
            return self._snapshot(t0, wall)
        finally:
            if gc_was:
                gc.enable()

    def _snapshot(self, t0: float, wall: float) -> CounterSnapshot:
        problems: list[Problem] = []
        handles = self.pool.refresh()
        for ino, why in self.pool.errors.items():
            ns = next((n for n in self.pool.namespaces if n.inode == ino), None)
            problems.append(Problem(where=ns.label if ns else str(ino), what=why))
        if self.only:
            handles = [h for h in handles if self.only(h.ns)]
        reads: list[_NsRead] = []
        for h in handles:
            try:
                reads.append(_read_netlink(h))
            except (OSError, VnetdiagError) as exc:
                problems.append(Problem(where=h.ns.label, what=f"netlink dump failed: {exc}"))
        by_ifindex: dict[int, list[_NsRead]] = {}
        for r in reads:
            for link in r.links:
                by_ifindex.setdefault(link.ifindex, []).append(r)
        interfaces: list[InterfaceCounters] = []
        netns_stats: list[NetnsStats] = []
        for r in reads:
            for link in r.links:
                interfaces.append(self._interface(r, link, by_ifindex, problems))
            netns_stats.append(_netns_stats(r.handle, problems))
            _prune_cache(r)
        try:
            softnet = procnet.read_softnet(self.pool.proc_root)
        except OSError as exc:
            softnet = ()
            problems.append(Problem(where="host", what=f"softnet_stat: {exc}"))
        names = {h.ns.inode for h in handles}
        return CounterSnapshot(
            taken_monotonic_s=t0, taken_unix_s=wall, duration_ms=(time.monotonic() - t0) * 1000,
            namespaces=tuple(n for n in self.pool.namespaces if n.inode in names),
            interfaces=tuple(interfaces), netns_stats=tuple(netns_stats), softnet=softnet,
            problems=tuple(problems),
        )

    def _interface(self, r: _NsRead, link: links_mod.RawLink, by_ifindex, problems) -> InterfaceCounters:
        h = r.handle
        iface = self._inventory(r, link, by_ifindex)
        driver_stats: dict[str, int] = {}
        queues: dict[tuple[str, int], dict[str, int]] = {}
        if self.driver_stats:
            try:
                got = _driver_stats(h, link)
            except OSError as exc:
                got = None
                if exc.errno not in (_errno.ENODEV,):
                    problems.append(Problem(where=f"{h.ns.label}/{link.name}", what=f"ethtool -S: {exc.strerror}"))
            if got:
                reader, values = got
                for (qkey, short), value in zip(reader.split, values):
                    if qkey is None:
                        driver_stats[short] = value
                    else:
                        q = queues.get(qkey)
                        if q is None:
                            q = queues[qkey] = {}
                        q[short] = value
        return InterfaceCounters(
            interface=iface, stats=link.stats, driver_stats=driver_stats,
            queues=tuple(QueueCounters(direction=d, queue=q, counters=c) for (d, q), c in sorted(queues.items())),
            qdiscs=tuple(r.qdiscs.get(link.ifindex, ())),
        )

    def _inventory(self, r: _NsRead, link: links_mod.RawLink, by_ifindex) -> Interface:
        """The Interface record; the previous snapshot's object is reused when
        nothing in the inventory changed (counters change, inventories rarely)."""
        h = r.handle
        key = ("inv", link.ifindex)
        inv_key = (link.name, link.kind, link.slave_kind, link.mac, link.mtu, link.txqlen, link.operstate,
                   link.flags, link.carrier, link.carrier_changes, link.master, link.link, link.link_netnsid,
                   link.num_tx_queues, link.num_rx_queues, link.num_vf, link.alias, link.vxlan, link.tun,
                   link.macvlan_mode, h.ns.name)
        cached = h.cache.get(key)
        if cached is not None and cached[0] == inv_key and (cached[1].link is not None or link.link is None):
            return cached[1]
        ref = IfRef(netns_inode=h.ns.inode, ifindex=link.ifindex)
        peer = _resolve_link(self.pool, r, link, by_ifindex)
        driver = bus = None
        features: dict[str, bool] = {}
        if self.details:
            dkey = ("info", link.ifindex, link.name)
            info = h.cache.get(dkey)
            if info is None:
                info = h.cache[dkey] = _details(h, link.name)
            driver, bus, features = info
        iface = Interface(
            ref=ref, name=link.name, netns_name=h.ns.label, kind=link.kind, slave_kind=link.slave_kind,
            driver=driver, bus_info=bus, mac=link.mac, mtu=link.mtu, txqlen=link.txqlen,
            operstate=link.operstate, flags=link.flags, carrier=link.carrier,
            carrier_changes=link.carrier_changes, master_ifindex=link.master,
            link_ifindex=link.link, link_netnsid=link.link_netnsid, link=peer,
            num_tx_queues=link.num_tx_queues, num_rx_queues=link.num_rx_queues, num_vf=link.num_vf,
            features=features, vxlan=link.vxlan, tun=link.tun, macvlan_mode=link.macvlan_mode,
            alias=link.alias,
        )
        if self.details:
            h.cache[key] = (inv_key, iface)
        return iface


def snapshot(*, pool: NetlinkPool | None = None, only: Callable[[Namespace], bool] | None = None) -> CounterSnapshot:
    """One snapshot of every namespace. For repeated snapshots keep a
    ``Collector`` (or pass a pool) so sockets and caches are reused."""
    with Collector(pool, only=only) as c:
        return c.snapshot()


def _read_netlink(h: NsHandle) -> _NsRead:
    raw = [links_mod.decode_link(p) for t, p in rtnl.dump_links(h.nl) if t == rtnl.RTM_NEWLINK]
    qdiscs: dict[int, list[QdiscCounters]] = {}
    configured: set[int] = set()
    for t, p in rtnl.dump_qdiscs(h.nl):
        if t != rtnl.RTM_NEWQDISC:
            continue
        ifindex, q = tc.decode(p, is_class=False)
        qdiscs.setdefault(ifindex, []).append(q)
        if q.handle != "0:":
            configured.add(ifindex)
    # The kernel dumps classes one device at a time; only devices with a
    # qdisc somebody configured (non-zero handle) can have classes worth reading.
    for ifindex in sorted(configured):
        for t, p in rtnl.dump_classes(h.nl, ifindex):
            if t == rtnl.RTM_NEWTCLASS:
                _, q = tc.decode(p, is_class=True)
                qdiscs[ifindex].append(q)
    return _NsRead(handle=h, links=raw, qdiscs=qdiscs)


def _prune_cache(r: _NsRead) -> None:
    """Forget per-device caches of devices that are gone (a long watch sees churn)."""
    cache = r.handle.cache
    if len(cache) <= 3 * len(r.links):  # ("inv", "info", "stats") per device
        return
    live = {link.ifindex for link in r.links}
    for key in [k for k in cache if k[1] not in live]:
        del cache[key]


def _resolve_link(pool: NetlinkPool, r: _NsRead, link: links_mod.RawLink, by_ifindex) -> IfRef | None:
    if link.link is None:
        return None
    if link.link_netnsid is None or link.link_netnsid < 0:
        if link.link == link.ifindex:
            return None
        return IfRef(netns_inode=r.handle.ns.inode, ifindex=link.link)
    # In another namespace, known to us only by this namespace's id for it. Ask
    # the kernel which namespace that id is; try first the namespaces that have
    # the right ifindex (and, for veth, point back at us).
    cands = [o for o in by_ifindex.get(link.link, ()) if o is not r]

    def points_back(o: _NsRead) -> bool:
        return any(x.ifindex == link.link and x.link == link.ifindex for x in o.links)

    cands.sort(key=lambda o: not points_back(o))
    ino = pool.resolve_nsid(r.handle, link.link_netnsid, [o.handle for o in cands])
    if ino is None:  # the peer's namespace was filtered out of this snapshot: ask about all
        tried = {o.handle.ns.inode for o in cands} | {r.handle.ns.inode}
        others = [h for h in pool.handles.values() if h.ns.inode not in tried]
        ino = pool.resolve_nsid(r.handle, link.link_netnsid, others)
    return IfRef(netns_inode=ino, ifindex=link.link) if ino is not None else None


def _details(h: NsHandle, name: str) -> tuple[str | None, str | None, dict[str, bool]]:
    fd = h.nl.fileno()
    try:
        info = ethtool.drvinfo(fd, name)
        driver, bus = info["driver"] or None, info["bus_info"] or None
    except OSError:
        driver = bus = None
    try:
        feats = ethtool.features(fd, name)
    except OSError:
        feats = {}
    return driver, bus, feats


class _Stats:
    """An ethtool reader plus each name split once into (queue key, short name)."""

    __slots__ = ("reader", "split")

    def __init__(self, reader: ethtool.StatsReader | None) -> None:
        self.reader = reader
        names = reader.names if reader else []
        split: list[tuple[tuple[str, int] | None, str]] = []
        for name in names:
            q = split_queue_name(name)
            split.append(((q[0], q[1]), q[2]) if q else (None, name))
        self.split = split


def _driver_stats(h: NsHandle, link: links_mod.RawLink) -> tuple[_Stats, list[int]] | None:
    fd = h.nl.fileno()
    key = ("stats", link.ifindex, link.name)
    st = h.cache.get(key)
    if st is None:
        try:
            st = h.cache[key] = _Stats(ethtool.StatsReader(fd, link.name))
        except OSError as exc:
            if exc.errno in ethtool.UNSUPPORTED:
                h.cache[key] = _Stats(None)  # a driver without ethtool stats: do not ask again
                return None
            raise
    if st.reader is None or not st.reader.names:
        return None
    values = st.reader.read(fd, link.name)
    if values is None:  # the driver's set changed (queues added): read names again
        st = h.cache[key] = _Stats(ethtool.StatsReader(fd, link.name))
        values = st.reader.read(fd, link.name) or []
    return st, values


def _netns_stats(h: NsHandle, problems: list[Problem]) -> NetnsStats:
    snmp: dict[str, dict[str, int]] = {}
    sockstat: dict[str, dict[str, int]] = {}
    try:
        for key in ("snmp", "netstat"):
            text = h.read(key)
            if text:
                procnet.parse_snmp(text, snmp)
        snmp6 = procnet.parse_snmp6(h.read("snmp6") or "")
        for key in ("sockstat", "sockstat6"):
            procnet.parse_sockstat(h.read(key) or "", sockstat)
        conntrack = None
        if "conntrack_count" in h.files or "conntrack_stat" in h.files:
            count = h.read("conntrack_count")
            limit = h.read("conntrack_max")
            conntrack = ConntrackStats(
                count=int(count) if count and count.strip().isdigit() else None,
                limit=int(limit) if limit and limit.strip().isdigit() else None,
                per_cpu=procnet.parse_conntrack_stat(h.read("conntrack_stat") or ""),
            )
    except OSError as exc:
        problems.append(Problem(where=h.ns.label, what=f"/proc/net: {exc}"))
        snmp6, conntrack = {}, None
    return NetnsStats(netns_inode=h.ns.inode, snmp=snmp, snmp6=snmp6, sockstat=sockstat, conntrack=conntrack)
