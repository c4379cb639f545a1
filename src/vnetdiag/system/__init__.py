"""Thin adapters to the running system: namespaces, processes, state, privileges."""
