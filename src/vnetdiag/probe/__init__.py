"""The request/response latency probe: wire protocol, server, client, histograms.

Library entry points: ``vnetdiag.probe.server.Server`` and
``vnetdiag.probe.client.run_probe``.
"""
