"""Graphviz's ``dot`` as a layout engine: DOT text in, SVG text out."""

from __future__ import annotations

import shutil

from vnetdiag.system import nsexec


def available() -> bool:
    return shutil.which("dot") is not None


def svg(dot_text: str, *, timeout_s: float = 30.0) -> str:
    """The SVG ``dot -Tsvg`` lays out; MissingFeatureError without Graphviz,
    ToolError with dot's message when it refuses the graph."""
    nsexec.need("dot", "graphviz")
    return nsexec.run(["dot", "-Tsvg"], input=dot_text, timeout_s=timeout_s,
                      hint="the DOT came from vnetdiag: please report it with `vnetdiag topology --format dot`").stdout
