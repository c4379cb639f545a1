"""The inventory (how every interface is built) as a document and table rows."""

from __future__ import annotations

from dataclasses import asdict

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.interfaces import Interface
from vnetdiag.model.namespaces import inode_label
from vnetdiag.report.tables import Col, fitted

SCHEMA = "vnetdiag.inventory/1"
# Offloads worth a column, by the kernel's feature names (ethtool -k).
SUMMARY_FEATURES = {"sg": "tx-scatter-gather", "tso": "tx-tcp-segmentation",
                    "gso": "tx-generic-segmentation", "gro": "rx-gro", "csum": "tx-checksum-ip-generic"}


def interface_dict(x: Interface) -> dict:
    d = asdict(x)
    d.pop("ref")
    d = {"id": x.id, "netns_inode": x.ref.netns_inode, "ifindex": x.ref.ifindex, **d}
    d["link"] = x.link.id if x.link else None
    return d


def document(s: CounterSnapshot) -> dict:
    return {
        "schema": SCHEMA,
        "taken_unix_s": s.taken_unix_s,
        "namespaces": [{"inode": n.inode, "name": n.name, "path": n.path, "is_host": n.is_host,
                        "pids": [asdict(h) for h in n.holders]} for n in s.namespaces],
        "interfaces": [interface_dict(i.interface) for i in s.interfaces],
        "problems": [asdict(p) for p in s.problems],
    }


# (row key, header, column): the order of the table; ``drop`` says what goes
# first when the terminal is narrow (the least useful for finding a path).
COLUMNS = (
    ("namespace", Col(header="namespace", key=True)),
    ("ifindex", Col(header="ifindex", justify="right", drop=4)),
    ("name", Col(header="name", key=True)),
    ("kind", Col(header="kind", drop=2)),
    ("driver", Col(header="driver", drop=8)),
    ("mac", Col(header="mac", key=True, drop=1)),
    ("mtu", Col(header="mtu", justify="right", drop=3)),
    ("qlen", Col(header="qlen", justify="right", drop=9)),
    ("state", Col(header="state", drop=5)),
    ("master", Col(header="master", key=True)),
    ("link", Col(header="link", key=True)),
    ("queues", Col(header="rxq/txq", drop=10)),
    ("offloads", Col(header="offloads", drop=11)),
    ("details", Col(header="details", drop=7)),
)


def table(rows: list[dict[str, str]], *, title: str):
    """The inventory table, fitted to the width it is printed at (namespace shown once per group)."""
    cells, last = [], None
    for r in rows:
        shown = "" if r["namespace"] == last else r["namespace"]
        last = r["namespace"]
        cells.append([shown if k == "namespace" else r[k] for k, _c in COLUMNS])
    return fitted([c for _k, c in COLUMNS], cells, title=title, title_justify="left")


def rows(s: CounterSnapshot) -> list[dict[str, str]]:
    """One row per interface, for the terminal table."""
    labels = {n.inode: n.label for n in s.namespaces}
    by_ref = {i.interface.ref: i.interface for i in s.interfaces}
    out = []
    for i in s.interfaces:
        x = i.interface
        master = by_ref.get(type(x.ref)(netns_inode=x.ref.netns_inode, ifindex=x.master_ifindex)) if x.master_ifindex else None
        link = ""
        if x.link is not None:
            other = by_ref.get(x.link)
            where = "" if x.link.netns_inode == x.ref.netns_inode else f"{labels.get(x.link.netns_inode, x.link.netns_inode)}/"
            link = f"{where}{other.name if other else '#' + str(x.link.ifindex)}"
        elif x.link_ifindex:
            link = f"#{x.link_ifindex} (netnsid {x.link_netnsid}, unresolved)"
        how = []
        if x.vxlan:
            v = x.vxlan
            how.append(f"vni {v.vni} {v.local or '*'}->{v.remote or '*'}:{v.port}")
            if v.underlay_ifindex:
                u = by_ref.get(type(x.ref)(netns_inode=x.ref.netns_inode, ifindex=v.underlay_ifindex))
                how.append(f"dev {u.name if u else v.underlay_ifindex}")
        if x.tun:
            t = x.tun
            how.append(t.type + (" mq" if t.multi_queue else "") + (" vnet_hdr" if t.vnet_hdr else "")
                       + (f" queues={t.num_queues}" if t.num_queues is not None else ""))
        if x.macvlan_mode:
            how.append(f"mode {x.macvlan_mode}")
        if x.num_vf:
            how.append(f"{x.num_vf} VFs")
        offl = ",".join(k for k, f in SUMMARY_FEATURES.items() if x.features.get(f))
        out.append({
            "namespace": labels.get(x.ref.netns_inode) or inode_label(x.ref.netns_inode),
            "ifindex": str(x.ref.ifindex), "name": x.name, "kind": x.kind or "-",
            "driver": x.driver or "-", "mac": x.mac or "-", "mtu": str(x.mtu), "qlen": str(x.txqlen),
            "state": x.operstate, "master": master.name if master else "", "link": link,
            "queues": f"{x.num_rx_queues or 0}/{x.num_tx_queues or 0}", "offloads": offl,
            "details": " ".join(how),
        })
    return out
