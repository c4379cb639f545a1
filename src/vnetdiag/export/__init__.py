"""Prometheus exporter: metric families from counter snapshots, and the /metrics server."""
