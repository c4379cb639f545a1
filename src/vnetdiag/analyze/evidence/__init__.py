"""The evidence kinds diagnose weighs, one module each, in the order they run.

Each module has ``name``, ``source`` (trace, counter, config), ``weight`` (what
it adds to a verdict's confidence), ``confirm`` (how the user checks a verdict
it supports), ``candidates(ctx, out)`` and ``merge(ctx, out)``. Every kind's
candidates are collected first, then the merges run in this order: the
probe's own packets and the tallies meet at one place before tables, rules,
causes and MTUs fold what they explain, a stalled queue folds the failed
neighbour resolutions it caused, and adjacent places fold last.
To add a kind: write its module and list it here (docs/diagnose.md says how).
"""

from __future__ import annotations

from vnetdiag.analyze.evidence import (
    adjacent, conntrack, counters, guest_tx, mtu, neighbour, packets, protocol, routes, rules, softnet, traced,
    txstall,
)

KINDS = (packets, traced, counters, txstall, guest_tx, conntrack, rules, softnet, protocol, routes, mtu, neighbour,
         adjacent)
BY_NAME = {k.name: k for k in KINDS}
