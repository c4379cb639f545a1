"""Graphviz's ``dot`` as a layout engine: DOT text in, SVG text out."""

from __future__ import annotations

import re
import shutil

from vnetdiag.system import nsexec
from vnetdiag.system.nsexec import ToolError

_SIZE = re.compile(r'<svg width="([0-9.]+)pt" height="([0-9.]+)pt"')
_XMLNS = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')


def available() -> bool:
    return shutil.which("dot") is not None


def svg(dot_text: str, *, timeout_s: float = 30.0) -> str:
    """The SVG ``dot -Tsvg`` lays out; MissingFeatureError without Graphviz,
    ToolError with dot's message when it refuses the graph."""
    nsexec.need("dot", "graphviz")
    hint = "the DOT came from vnetdiag: please report it with `vnetdiag topology --format dot`"
    try:
        return nsexec.run(["dot", "-Tsvg"], input=dot_text, timeout_s=timeout_s, hint=hint).stdout
    except ToolError as exc:
        # dot's orthogonal router fails an assertion on some graphs (maze.c:
        # chkSgraph); the same layout with polyline edges still draws.
        if "splines=ortho" not in dot_text or "maze.c" not in str(exc):
            raise
        return nsexec.run(["dot", "-Tsvg"], input=dot_text.replace("splines=ortho", "splines=polyline"),
                          timeout_s=timeout_s, hint=hint).stdout


def width_pt(svg_text: str) -> float:
    """The width dot drew ``svg_text`` at, in points."""
    m = _SIZE.search(svg_text)
    return float(m.group(1)) if m else 0.0


def inline(svg_text: str) -> str:
    """dot's SVG ready to sit inside HTML: no XML prologue or DOCTYPE, and
    sized by its viewBox to its container's width, never wider than dot drew
    it (dot writes a fixed size in points, which a narrower page cuts off).
    The XML namespace declarations go too: HTML's parser knows SVG's and
    xlink's, and a report then names no URL at all."""
    body = svg_text[svg_text.index("<svg"):]
    head = body.index(">")
    body = _XMLNS.sub("", body[:head]) + body[head:]
    return _SIZE.sub(lambda m: f'<svg width="100%" style="max-width: {m.group(1)}pt; height: auto" '
                               f'data-width-pt="{m.group(1)}" preserveAspectRatio="xMinYMin meet"', body, count=1)
