"""Outputs: result documents, terminal tables, HTML. They never collect."""
