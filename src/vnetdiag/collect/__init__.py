"""Sources: read the kernel, return records. Nothing here prints.

``snapshot()`` reads every interface, qdisc and protocol counter in every
namespace; ``Collector`` does the same repeatedly with its sockets kept open.
"""

from vnetdiag.collect.snapshot import Collector, snapshot

__all__ = ["Collector", "snapshot"]
