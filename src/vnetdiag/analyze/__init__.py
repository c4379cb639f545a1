"""Analyses: take records, return records; no I/O."""
