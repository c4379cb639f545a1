"""Headless Chromium for checking vnetdiag's pages as a reader sees them.

``check(page)`` opens a copy of the page with a script appended that measures
the laid-out pictures in the browser (boxes from getBoundingClientRect, so
what is checked is what is drawn) and writes its findings into the DOM, which
``--dump-dom`` prints. ``screenshot(page, png)`` takes a picture of it. Used
by tests/integration/test_pages.py and scripts/regen_samples.py.

Chromium runs as root only with --no-sandbox; each run gets its own
temporary profile directory, removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

RESULT_ID = "vnetdiag-checks"

# Everything the checks need is in the page: pictures are SVGs whose boxes are
# Graphviz nodes (g.node, or the fallback layout's), cluster labels and edge
# labels. Boxes are compared in page pixels; 0.5 px of rounding is forgiven.
_SCRIPT = r"""
(() => {
  const EPS = 0.5;
  const r = el => { const b = el.getBoundingClientRect();
                    return {x0: b.left, y0: b.top, x1: b.right, y1: b.bottom, w: b.width, h: b.height}; };
  const overlap = (a, b) => Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0) > EPS &&
                            Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0) > EPS;
  const inside = (a, o) => a.x0 >= o.x0 - EPS && a.y0 >= o.y0 - EPS && a.x1 <= o.x1 + EPS && a.y1 <= o.y1 + EPS;
  const name = el => el.getAttribute("data-id") || el.id || (el.textContent || "").trim().slice(0, 40);
  const shape = g => g.querySelector(":scope > path, :scope > polygon, :scope > rect, :scope > ellipse") ||
                     g.querySelector("a path, a polygon, a rect, a ellipse") || g;
  const viewport = {x0: 0, y0: 0, x1: document.documentElement.clientWidth, y1: Infinity};
  const out = {viewport_width_px: viewport.x1, pictures: []};
  document.querySelectorAll("svg").forEach((svg, k) => {
    const nodes = [...svg.querySelectorAll("g.node")];
    const box = r(svg);
    const container = svg.parentElement ? r(svg.parentElement) : box;
    const labels = [...svg.querySelectorAll("g.cluster > text, g.edge > text, g.edge a text")];
    const items = [...nodes.map(g => ({what: "node", name: name(g), box: r(shape(g)), g: g})),
                   ...labels.map(t => ({what: "label", name: name(t), box: r(t)}))];
    const p = {index: k, id: svg.id || svg.parentElement.id || svg.getAttribute("class") || "",
               width_px: box.w, height_px: box.h, nodes: nodes.length, labels: labels.length,
               node_ids: nodes.map(name), overlaps: [], outside: [], text_overflow: [], arrows: [], ticks: []};
    for (let i = 0; i < items.length; i++) {
      const a = items[i];
      if (a.box.w === 0 && a.box.h === 0) continue;  // hidden (display: none)
      if (!inside(a.box, box) || !inside(a.box, viewport) || !inside(a.box, container))
        p.outside.push(`${a.what} ${a.name}`);
      for (let j = i + 1; j < items.length; j++) {
        const b = items[j];
        if (overlap(a.box, b.box)) p.overlaps.push(`${a.what} ${a.name} / ${b.what} ${b.name}`);
      }
      if (a.g) a.g.querySelectorAll("text").forEach(t => {
        if (!inside(r(t), a.box)) p.text_overflow.push(`${a.name}: ${t.textContent}`);
      });
    }
    // Edges through labels: points along each edge's line, 2 px apart, inside a label's box.
    const labelBoxes = labels.map(t => ({name: name(t), box: r(t)})).filter(l => l.box.w > 0);
    svg.querySelectorAll("g.edge").forEach(e => {
      const line = e.querySelector("path");
      if (!line || !line.getTotalLength || getComputedStyle(e).display === "none") return;
      const m = line.getScreenCTM(), total = line.getTotalLength();
      const t = (e.querySelector("title") || {}).textContent || "";
      const hit = new Set();
      for (let s = 0; s <= total; s += 2) {
        const q = line.getPointAtLength(s);
        const x = m.a * q.x + m.c * q.y + m.e, y = m.b * q.x + m.d * q.y + m.f;
        for (const l of labelBoxes)
          if (x > l.box.x0 + EPS && x < l.box.x1 - EPS && y > l.box.y0 + EPS && y < l.box.y1 - EPS) hit.add(l.name);
      }
      hit.forEach(n => p.overlaps.push(`edge ${t} / label ${n}`));
    });
    // Arrows: an edge's arrowhead (its polygon) is nearer the head node than the tail node.
    const byTitle = {};
    nodes.forEach(g => { const t = g.querySelector("title"); if (t) byTitle[t.textContent] = r(shape(g)); });
    svg.querySelectorAll("g.edge").forEach(e => {
      const t = (e.querySelector("title") || {}).textContent || "";
      const [tail, head] = t.split("->");
      const poly = e.querySelector("polygon");
      if (!byTitle[tail] || !byTitle[head]) return;
      const c = b => [(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2];
      const d = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1]);
      let towards = null;
      if (poly) { const pc = c(r(poly)); towards = d(pc, c(byTitle[head])) < d(pc, c(byTitle[tail])) ? "head" : "tail"; }
      p.arrows.push({edge: t, cls: e.getAttribute("class"), arrowhead: towards});
    });
    svg.querySelectorAll("text.ytick, text.xtick").forEach(t => p.ticks.push({axis: t.getAttribute("class"),
                                                                               text: t.textContent}));
    const ticks = [...svg.querySelectorAll("text.ytick, text.xtick, text.mark, text.axis-title")];
    for (let i = 0; i < ticks.length; i++) {
      if (!inside(r(ticks[i]), box)) p.outside.push(`text ${ticks[i].textContent}`);
      for (let j = i + 1; j < ticks.length; j++)
        if (overlap(r(ticks[i]), r(ticks[j]))) p.overlaps.push(`text ${ticks[i].textContent} / ${ticks[j].textContent}`);
    }
    out.pictures.push(p);
  });
  const other = document.getElementById("other-counters");
  out.other_counters_open = other ? other.open : null;
  out.page_height_px = Math.ceil(document.documentElement.scrollHeight);
  const pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
""" % RESULT_ID


def available() -> bool:
    return shutil.which("chromium") is not None


def _run(args: list[str], *, timeout_s: float) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="vnetdiag-chromium-")
    try:
        flags = ["chromium", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--hide-scrollbars", f"--user-data-dir={profile}", "--force-device-scale-factor=1"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")
        return subprocess.run([*flags, *args], capture_output=True, text=True, timeout=timeout_s)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass(frozen=True, kw_only=True)
class PageCheck:
    """What the in-page script measured."""

    viewport_width_px: int
    page_height_px: int
    pictures: list[dict]
    """One per SVG: node ids, overlapping boxes, boxes outside the picture or
    the viewport, node text outside its box, edges through labels, arrows
    (edge, arrowhead end), axis ticks."""
    other_counters_open: bool | None


def check(page: Path, *, width_px: int = 1400, height_px: int = 900, timeout_s: float = 60.0) -> PageCheck:
    """Open ``page`` at a window of ``width_px`` x ``height_px`` and measure its pictures."""
    html = page.read_text()
    at = html.rindex("</body>")
    with tempfile.TemporaryDirectory(prefix="vnetdiag-page-") as d:
        probe = Path(d) / page.name
        probe.write_text(html[:at] + f"<script>{_SCRIPT}</script>" + html[at:])
        r = _run([f"--window-size={width_px},{height_px}", "--dump-dom", probe.as_uri()], timeout_s=timeout_s)
    start = r.stdout.find(f'<pre id="{RESULT_ID}">')
    if start < 0:
        raise RuntimeError(f"chromium printed no check results (exit {r.returncode}): {r.stderr[-500:]}")
    body = r.stdout[start + len(f'<pre id="{RESULT_ID}">'):r.stdout.index("</pre>", start)]
    import html as html_mod

    doc = json.loads(html_mod.unescape(body))
    return PageCheck(**doc)


def screenshot(page: Path, png: Path, *, width_px: int = 1400, height_px: int | None = None,
               timeout_s: float = 60.0) -> None:
    """A PNG of ``page``; without ``height_px`` the window is as tall as the page."""
    if height_px is None:
        height_px = min(check(page, width_px=width_px).page_height_px + 16, 6000)
    _run([f"--window-size={width_px},{height_px}", f"--screenshot={png}", page.as_uri()], timeout_s=timeout_s)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
