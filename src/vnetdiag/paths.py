"""The path between two endpoints, both ways: the use case behind ``vnetdiag path``.

    from vnetdiag.collect import Collector
    from vnetdiag.paths import round_trip
    with Collector() as col:
        there, back = round_trip(col, "pid:26690", "/proc/26693/ns/net")
"""

from __future__ import annotations

from vnetdiag.model.counters import CounterSnapshot
from vnetdiag.model.topology import PathResult
from vnetdiag.naming import Endpoint, endpoint


def round_trip(collector, source: str | Endpoint, destination: str | Endpoint, *, one_way: bool = False,
               snap: CounterSnapshot | None = None) -> list[PathResult]:
    """Resolve FROM -> TO (and back, unless ``one_way``) on the topology of
    ``snap`` (a new snapshot by default). Endpoints take every namespace form and
    lab nodes (``vnetdiag.naming``)."""
    from vnetdiag.topology import discover
    from vnetdiag.topology.path import resolve
    from vnetdiag.topology.routes import kernel_lookup

    snap = snap or collector.snapshot()
    a = source if isinstance(source, Endpoint) else endpoint(source, snap.namespaces)
    b = destination if isinstance(destination, Endpoint) else endpoint(destination, snap.namespaces)
    topo = discover(snap, collector.pool)
    lookup = kernel_lookup(collector.pool)

    def spec(e, address):  # the identity, in the form the pure path walk takes
        return f"netns:{e.ns.inode}" + (f":{address}" if address else "")

    there = resolve(topo, lookup, spec(a, a.address), spec(b, b.address))
    there = _named(there, a.text, b.text)
    if one_way:
        return [there]
    back = resolve(topo, lookup, spec(b, there.dst_address), spec(a, a.address or there.src_address))
    return [there, _named(back, b.text, a.text)]


def _named(r: PathResult, source: str, destination: str) -> PathResult:
    """The result with the endpoints as the user wrote them."""
    import dataclasses

    return dataclasses.replace(r, source=source, destination=destination)
