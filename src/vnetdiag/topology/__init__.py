"""Topology: discovery from the counters inventory, path resolution, views.

    from vnetdiag.collect import Collector
    from vnetdiag.topology import discover
    with Collector() as col:
        topo = discover(col.snapshot(), col.pool)
"""

from vnetdiag.topology.discover import discover

__all__ = ["discover"]
