"""Latency in the unit a reader expects: µs below a millisecond, ms below a second."""

from __future__ import annotations


def fmt_us(us: float) -> str:
    """A measured latency, four significant digits: "110.5 us", "207.4 ms", "1.02 s"."""
    if us >= 1_000_000:
        return f"{us / 1e6:.3g} s"
    if us >= 1000:
        return f"{us / 1000:.4g} ms"
    return f"{us:.4g} us"


def edge_us(us: float) -> str:
    """An axis edge or bucket bound, as short as it can be: "10 ms", "1 s"."""
    if us >= 1_000_000:
        return f"{us / 1e6:g} s"
    if us >= 1000:
        return f"{us / 1000:g} ms"
    return f"{us:g} us"
