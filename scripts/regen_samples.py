"""Regenerate every sample in docs/samples/ from the current code, on a real lab.

Run as root from the repository (about two minutes):

    .venv/bin/python scripts/regen_samples.py [--prefix smp] [--only NAME ...] [--list]

It builds the default lab under its own prefix (default "smp", so a user's
"vnd" lab and test runs are never touched), runs each sample's commands as a
user types them (the vnetdiag CLI, COLUMNS=120, output piped), writes the
sample, clears the faults it added and takes the lab down at the end. Samples
are a list (SAMPLES, one function each, in the order they run); a sample's
first line is the command when the docs show it. Numbers differ from run to
run (it is real traffic); the shapes do not. Afterwards, compare the docs
pages that quote samples (docs/*.md) with the new files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "samples"
VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
TOKEN = "samples"
_BURST = ("ping", "-q", "-f", "-l", "30", "-W", "1")


class Run:
    """The lab and the commands of one regeneration."""

    def __init__(self, prefix: str, tmp: Path) -> None:
        self.prefix = prefix
        self.tmp = tmp
        self.env = {**os.environ, "VNETDIAG_LAB_PREFIX": prefix, "COLUMNS": "120",
                    "VNETDIAG_PROBE_TOKEN": TOKEN}

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def glob(self) -> str:
        return f"{self.prefix}-*"

    def vnetdiag(self, *args: str, ok: tuple[int, ...] = (0, 1), timeout_s: float = 120) -> str:
        """stdout of ``vnetdiag ARGS`` (stderr, the progress lines, is dropped)."""
        r = subprocess.run([VNETDIAG, *args], capture_output=True, text=True, env=self.env, timeout=timeout_s)
        if r.returncode not in ok:
            raise SystemExit(f"vnetdiag {shlex.join(args)}: exit {r.returncode}: {r.stderr.strip()[-800:]}")
        return r.stdout

    def shown(self, *args: str, sudo: bool = False, **kw) -> str:
        """The command line, then its output: what a sample that shows its command holds."""
        return f"$ {'sudo ' if sudo else ''}vnetdiag {shlex.join(args)}\n" + self.vnetdiag(*args, **kw)

    def node(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A tool run inside a lab node (through ``vnetdiag lab exec``)."""
        r = subprocess.run([VNETDIAG, "lab", "exec", node, "--", *argv], capture_output=True, text=True,
                           env=self.env, timeout=120)
        if check and r.returncode != 0:
            raise SystemExit(f"lab exec {node} {shlex.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def background(self, node: str, *argv: str) -> subprocess.Popen:
        return subprocess.Popen([VNETDIAG, "lab", "exec", node, "--", *argv], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def fault(self, kind: str, at: str, **options) -> None:
        args = ["lab", "fault", "add", kind, "--at", at]
        for k, v in options.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.vnetdiag(*args, ok=(0,))

    def clear(self) -> None:
        self.vnetdiag("lab", "fault", "clear", ok=(0,))

    def serve(self, node: str = "vm3", address: str = "198.51.100.3") -> subprocess.Popen:
        """A probe server in ``node``, once it listens."""
        p = subprocess.Popen([VNETDIAG, "serve", "--netns", node, "--listen", f"{address}:7735"], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = p.stdout.readline()
        if "listening" not in line:
            p.kill()
            raise SystemExit(f"probe server did not start: {line}")
        return p

    def ping_flood(self, src: str, dst: str, *, count: int, size: int = 1400) -> None:
        """A burst: 30 pings in flight at once, so a small queue overflows."""
        self.node(src, *_BURST, "-c", str(count), "-s", str(size), dst, check=False)


def links_up(r: Run, *, timeout_s: float = 20.0) -> None:
    """Wait until every lab link is up: ``lab up`` returns before the kernel has
    carried every veth to operstate UP, and a sample taken then shows it down."""
    nodes = ("fabric", "hv1", "hv2", "vm1", "vm2", "vm3")
    deadline = time.monotonic() + timeout_s
    while True:
        down = [f"{n}: {line.split(':')[1].strip()}" for n in nodes
                for line in r.node(n, "ip", "-o", "link", "show").stdout.splitlines() if "state DOWN" in line]
        if not down:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"lab links still down after {timeout_s:.0f} s: {', '.join(down)}")
        time.sleep(0.1)


def write(name: str, text: str | bytes) -> None:
    path = OUT / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")
    print(f"  wrote docs/samples/{name} ({path.stat().st_size} bytes)")


def _trimmed(doc, *, items: int = 2, fields: int = 8):
    """A document with every list cut to its first ``items`` entries and every
    table of numbers (e.g. /proc/net/snmp) to ``fields`` keys, saying how many
    were left out (samples stay readable)."""
    if isinstance(doc, dict):
        keys = list(doc)
        if len(keys) > fields + 2 and all(isinstance(v, (int, float)) for v in doc.values()):
            return {**{k: doc[k] for k in keys[:fields]}, "...": f"{len(keys) - fields} more"}
        return {k: _trimmed(v, items=items, fields=fields) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_trimmed(v, items=items, fields=fields) for v in doc[:items]]
    return doc


# --- the samples ----------------------------------------------------------------------------------------------


def inventory(r: Run) -> None:
    write("inventory.txt", r.vnetdiag("inventory", "--netns", r.glob))


def counters(r: Run) -> None:
    r.fault("queue-overflow", "hv1:vm1-p")
    r.ping_flood("vm3", "198.51.100.1", count=300)
    write("counters.txt", r.vnetdiag("counters", "--netns", r.glob))
    flood = r.background("vm3", *_BURST, "-c", "3000", "-s", "1400", "198.51.100.1")
    try:
        write("counters-watch.txt", r.vnetdiag("counters", "--watch", "--count", "3", "--netns", r.glob))
    finally:
        flood.wait(timeout=60)
    r.clear()
    doc = json.loads(r.vnetdiag("counters", "--json", "--netns", r.ns("vm1")))
    write("counters.json", json.dumps(_trimmed(doc, items=2), indent=2))


def topology(r: Run) -> None:
    write("topology.txt", r.vnetdiag("topology", "--netns", r.glob))
    dot = r.vnetdiag("topology", "--netns", r.glob, "--format", "dot")
    write("topology.dot", dot)
    write("topology.svg", subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True,
                                         check=True).stdout)
    r.vnetdiag("topology", "--netns", r.glob, "--format", "html", "-o", str(OUT / "topology.html"))
    print("  wrote docs/samples/topology.html")
    doc = json.loads(r.vnetdiag("topology", "--netns", r.ns("hv2"), "--netns", r.ns("vm3"), "--json"))
    write("topology.json", json.dumps(doc, indent=2))
    old = r.tmp / "topology-old.json"
    old.write_text(r.vnetdiag("topology", "--netns", r.glob, "--json"))
    r.node("hv1", "ip", "link", "add", "tmp0", "type", "veth", "peer", "name", "tmp1")
    try:
        r.node("hv1", "ip", "link", "set", "tmp0", "master", "br0")
        write("topology-diff.txt", r.vnetdiag("topology", "--netns", r.glob, "--diff", str(old)))
    finally:
        r.node("hv1", "ip", "link", "del", "tmp0")


def paths(r: Run) -> None:
    r.node("vm1", "ping", "-c", "2", "-i", "0.2", "198.51.100.3")
    r.node("vm1", "ping", "-c", "2", "-i", "0.2", "198.51.100.2")
    write("path.txt", r.vnetdiag("path", r.ns("vm1"), r.ns("vm3")))
    write("path-macvtap.txt", r.vnetdiag("path", r.ns("vm1"), r.ns("vm2")))
    # A bridge that learns nothing (ageing 0): the path names the ports it floods to.
    r.node("hv1", "ip", "link", "set", "br0", "type", "bridge", "ageing_time", "0")
    try:
        r.node("vm1", "ping", "-c", "2", "-i", "0.2", "198.51.100.3")
        write("path-flood.txt", r.vnetdiag("path", r.ns("vm1"), r.ns("vm3"), "--one-way"))
    finally:
        r.node("hv1", "ip", "link", "set", "br0", "type", "bridge", "ageing_time", "30000")


def probes(r: Run) -> None:
    server = r.serve()
    try:
        probe = ("probe", "--netns", "vm1", "198.51.100.3")
        write("probe_clean.txt", r.vnetdiag(*probe, "--streams", "4", "--duration", "5"))
        r.fault("loss", "hv1:vm1-p", percent=2)
        write("probe_loss.txt", r.vnetdiag(*probe, "--streams", "16", "--duration", "5",
                                           "--hlog", str(OUT / "probe_loss.hlog")))
        print("  wrote docs/samples/probe_loss.hlog")
        doc = json.loads(r.vnetdiag(*probe, "--streams", "4", "--duration", "3", "--json"))
        write("probe_loss_excerpt.json", json.dumps(_trimmed(doc), indent=2))
        r.clear()
        write("probe_bsp_clean.txt", r.vnetdiag(*probe, "--pattern", "bsp", "--streams", "4", "--compute-ms", "5",
                                                "--duration", "3"))
        r.fault("loss", "hv1:vm1-p", percent=5)
        write("probe_bsp_loss.txt", r.vnetdiag(*probe, "--pattern", "bsp", "--streams", "4", "--compute-ms", "5",
                                               "--duration", "5"))
        write("probe_udp_loss.txt", r.vnetdiag(*probe, "--pattern", "udp-rr", "--streams", "4", "--duration", "3"))
    finally:
        server.terminate()
        server.wait(timeout=10)


def conntrack_full(r: Run) -> None:
    server = r.serve()
    try:
        probe = ("probe", "--netns", "vm1", "198.51.100.3")
        # conntrack-full changes a global setting: hold it alone, as the tests do (system/undo.py).
        from vnetdiag.system.undo import exclusive_global_settings

        with exclusive_global_settings():
            r.node("hv1", "conntrack", "-F", check=False)  # earlier connections' entries would hold the slots
            r.fault("conntrack-full", "hv1")
            done = threading.Event()

            def free_a_slot_every_half_second() -> None:
                # The table is full of phantom connections from 203.0.113.0/24: each one
                # freed lets one connect in, after its SYN was retransmitted.
                for host in range(1, 200):
                    if done.wait(0.5):
                        return
                    r.node("hv1", "conntrack", "-D", "-s", f"203.0.113.{host}", check=False)

            freer = threading.Thread(target=free_a_slot_every_half_second, daemon=True)
            freer.start()
            try:
                write("probe_crr_conntrack_full.txt", r.vnetdiag(*probe, "--pattern", "tcp-crr", "--streams", "1",
                                                                 "--warmup", "0", "--duration", "5"))
                write("export.txt", _export_excerpt(r))
            finally:
                done.set()
                freer.join()
                r.clear()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _export_excerpt(r: Run) -> str:
    """``export`` scraped once: every family with its HELP, TYPE and first
    series (of hv1 where it has one), and every conntrack series (what the fault moved)."""
    import socket
    import urllib.request

    with socket.socket() as s:  # a free port on loopback for the exporter
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ("export", "--listen", f"127.0.0.1:{port}", "--netns", r.glob)
    p = subprocess.Popen([VNETDIAG, *args], env=r.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:  # until it answers
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"exporter did not answer: {p.stderr.read() if p.poll() is not None else ''}")
                time.sleep(0.2)
    finally:
        p.terminate()
        p.wait(timeout=10)
    hv1 = f'netns="{r.ns("hv1")}"'
    out: list[str] = []
    chosen: dict[str, int] = {}  # family -> index in out of its series
    for line in body.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        family = re.split(r"[{ ]", line, maxsplit=1)[0]
        if "conntrack" in family:
            out.append(line)
        elif family not in chosen:
            chosen[family] = len(out)
            out.append(line)
        elif hv1 in line and hv1 not in out[chosen[family]]:
            out[chosen[family]] = line
    head = (f"$ sudo vnetdiag {shlex.join(args)} & curl -s 127.0.0.1:{port}/metrics"
            f"   # the lab with conntrack-full on hv1 after a tcp-crr probe; excerpt: one series of each family, every conntrack series")
    return head + "\n" + "\n".join(out)


def _traffic(r: Run, *, seconds: int = 5) -> subprocess.Popen:
    """vm1 -> vm3 for a few seconds, so that it spans a drops window (whose tracer
    takes a second to start): bursts of 30 pings in flight (queues overflow) and
    datagrams to port 9, where nothing listens (bash's /dev/udp: no tool needed)."""
    dst = "198.51.100.3"
    script = (f"for i in $(seq {seconds * 5}); do ping -q -l 30 -c 30 -s 1000 -W 1 -w 1 {dst} >/dev/null & "
              f"echo x > /dev/udp/{dst}/9; sleep 0.2; done; wait")
    return r.background("vm1", "bash", "-c", script)


def drops(r: Run) -> None:
    r.fault("loss", "hv1:vm1-p", percent=10)
    r.fault("queue-overflow", "hv2:vm3-p")
    p = _traffic(r)
    write("drops.txt", r.shown("drops", "--duration", "3", "--netns", r.glob))
    p.wait(timeout=60)
    p = _traffic(r)
    write("drops.json", json.dumps(_trimmed(json.loads(r.vnetdiag("drops", "--duration", "2.5", "--netns", r.glob,
                                                                  "--json")), items=5), indent=2))
    p.wait(timeout=60)
    r.clear()
    # Loss on the underlay: the dropped packets are VXLAN, and the flow inside them is read too.
    r.fault("loss", "fabric:hv2-p", percent=10)
    p = _traffic(r)
    write("drops-ebpf.txt", r.shown("drops", "--backend", "ebpf", "--duration", "3", "--netns", r.glob,
                                    "--filter", "udp port 4789"))
    p.wait(timeout=60)
    r.clear()


def traces(r: Run) -> None:
    rec = "/tmp/overlay.vtr"
    p = r.background("vm1", "ping", "-q", "-c", "20", "-i", "0.1", "198.51.100.3")
    text = r.shown("trace", "record", "-o", rec, "--duration", "2.5", "--events", "all", "--netns", r.glob)
    p.wait(timeout=60)
    write("trace-report.txt", text + r.shown("trace", "report", rec))
    os.unlink(rec)
    lttng = ROOT.parent / "shared" / "data" / "lttng" / "bug446190"
    if lttng.is_dir():
        os.chdir(ROOT)
        write("trace-report-lttng.txt", r.shown("trace", "report", os.path.relpath(lttng, ROOT)))
    else:
        print(f"  skipped trace-report-lttng.txt: no LTTng trace at {lttng}")
    ctf = r.tmp / "ctf"
    out = r.shown("trace", "export", "tests/golden/tracing/recording.vtr", "--ctf", str(ctf), "--json")
    write("trace-export.txt", out.replace(str(ctf), "/tmp/ctf"))


_WATCH_TOML = """interval_s = 1
namespaces = ["{glob}"]

[detectors.tx_stall]
raise_after = 2
[[detectors.tx_stall.actions]]
kind = "qdisc-reset"
cooldown_s = 5
max_attempts = 1

[detectors.conntrack]
clients = 4

[detectors.link]
enabled = false
"""


def watch(r: Run) -> None:
    """watch through a tx-stall at hv2:vm3-p (reset by its action), then conntrack-full at hv1."""
    import queue
    import signal

    from vnetdiag.system.undo import exclusive_global_settings

    (r.tmp / "watch.toml").write_text(_WATCH_TOML.format(glob=r.glob))
    args = ["watch", "--config", "watch.toml", "--journal", "journal.jsonl"]
    p = subprocess.Popen([VNETDIAG, *args], cwd=r.tmp, env={**r.env, "PYTHONUNBUFFERED": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in p.stdout], daemon=True).start()
    seen: list[str] = []

    def until(pattern: str, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(re.search(pattern, ln) for ln in seen):
            try:
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                p.kill()
                raise SystemExit(f"watch: no line matching {pattern!r} in {timeout_s:.0f} s: {''.join(seen)[-800:]}")

    try:
        until(r"^vnetdiag watch:")
        r.fault("tx-stall", "hv2:vm3-p")
        r.node("vm1", "ping", "-q", "-c", "50", "-i", "0.02", "-s", "1000", "-W", "1", "198.51.100.3", check=False)
        until(r"CLEARED tx_stall")
        r.clear()
        with exclusive_global_settings():
            r.node("hv1", "conntrack", "-F", check=False)
            r.fault("conntrack-full", "hv1")
            for _ in range(3):  # new flows the full table refuses
                r.node("vm1", "ping", "-q", "-c", "2", "-i", "0.2", "-W", "1", "198.51.100.3", check=False)
            until(r"RAISED\s+conntrack/refusing")
            r.clear()
        until(r"CLEARED conntrack/table-nearly-full")
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    time.sleep(0.2)  # the reader thread drains the pipe after exit
    while not lines.empty():
        seen.append(lines.get())
    write("watch.txt", f"$ sudo vnetdiag {shlex.join(args)}   # lab {r.prefix!r}: tx-stall at hv2:vm3-p, "
                       "then conntrack-full at hv1\n" + "".join(seen))
    write("watch-journal.jsonl", (r.tmp / "journal.jsonl").read_text())


def demo(r: Run) -> None:
    # The demo builds and removes a lab of its own: under a prefix of its own too.
    env = {**r.env, "VNETDIAG_LAB_PREFIX": r.prefix + "d", "PYTHONUNBUFFERED": "1"}  # lines in the order printed
    report = OUT / "diagnose-slow-guest.html"
    args = ["demo", "--fault", "slow-guest", "--report", "docs/samples/diagnose-slow-guest.html"]
    p = subprocess.run([VNETDIAG, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       cwd=ROOT, timeout=300)
    if p.returncode not in (0, 1):
        raise SystemExit(f"demo: exit {p.returncode}: {p.stdout[-800:]}")
    write("demo-slow-guest.txt", f"$ sudo vnetdiag {shlex.join(args)}\n" + p.stdout)
    print(f"  wrote docs/samples/diagnose-slow-guest.html ({report.stat().st_size} bytes)")


def compare(r: Run) -> None:
    # veth, its twin (the same path again: what noise alone shows), and the macvtap guest with loss.
    args = ["compare", "--path", "veth=vm1->vm3", "--path", "twin=vm1->vm3", "--path", "macvtap=vm2->vm3"]
    r.fault("loss", "hv1:mvl0-p", percent=2)
    try:
        out = r.vnetdiag(*args, "--html", str(OUT / "compare.html"), timeout_s=300)
    finally:
        r.clear()
    write("compare.txt", "$ vnetdiag lab fault add loss --at hv1:mvl0-p --percent 2\n"
                         f"$ vnetdiag {shlex.join([*args, '--html', 'docs/samples/compare.html'])}\n{out}")
    print(f"  wrote docs/samples/compare.html ({(OUT / 'compare.html').stat().st_size} bytes)")


def screenshots(r: Run) -> None:
    from vnetdiag.testing import browser

    browser.screenshot(OUT / "topology.html", OUT / "topology-html.png", width_px=1400)
    print("  wrote docs/samples/topology-html.png")
    browser.screenshot(OUT / "diagnose-slow-guest.html", OUT / "diagnose-report.png", width_px=1000)
    print("  wrote docs/samples/diagnose-report.png")


SAMPLES: dict[str, Callable[[Run], None]] = {
    "inventory": inventory, "counters": counters, "topology": topology, "path": paths, "probe": probes,
    "conntrack-full": conntrack_full, "drops": drops, "trace": traces, "watch": watch, "demo": demo, "compare": compare,
    "screenshots": screenshots,
}


_FENCE = re.compile(r"^```")
_REF = re.compile(r"samples/([\w.-]+)")


def quoted_blocks(page: Path) -> list[tuple[int, list[str], list[str]]]:
    """(line number, samples, lines) of each fenced block in a docs page that
    quotes samples: those named in the three lines before it."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            end = next((j for j in range(i + 1, len(lines)) if _FENCE.match(lines[j])), len(lines))
            refs = _REF.findall("\n".join(lines[max(0, i - 3):i]))
            if refs:
                out.append((i + 1, refs, lines[i + 1:end]))
            i = end + 1
        else:
            i += 1
    return out


def check_docs() -> int:
    """Lines of quoted blocks that are not in their samples ("...", "$ " and
    "exit status" lines are the page's own); prints them, returns how many blocks differ."""
    bad = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        for line_no, samples, block in quoted_blocks(page):
            paths = [OUT / name for name in samples if (OUT / name).suffix in (".txt", ".json", ".jsonl", ".hlog")]
            paths = [p for p in paths if p.is_file()]
            if not paths:
                continue
            have = {ln.rstrip() for p in paths for ln in p.read_text().splitlines()}
            missing = [ln for ln in block if ln.strip() not in ("...", "…") and not ln.startswith(("$ ", "exit status"))
                       and ln.rstrip() not in have]
            if missing:
                bad += 1
                print(f"{page.relative_to(ROOT)}:{line_no}: {len(missing)} of {len(block)} lines not in "
                      f"samples/{', '.join(samples)}, first: {missing[0][:100]!r}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default="smp", help="lab prefix (default smp)")
    ap.add_argument("--only", action="append", choices=list(SAMPLES), help="only these samples (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the samples and exit")
    ap.add_argument("--check-docs", action="store_true",
                    help="only check that the docs pages' quotes of samples are in the samples")
    args = ap.parse_args()
    if args.list:
        print("\n".join(SAMPLES))
        return 0
    if args.check_docs:
        return 1 if check_docs() else 0
    if os.geteuid() != 0:
        raise SystemExit("regen_samples: needs root (it builds the lab)")
    from vnetdiag import lab as lab_mod
    from vnetdiag.lab import spec

    lab_mod.down(args.prefix)
    lab_mod.up(spec.default(args.prefix))
    started = time.monotonic()
    failed: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vnetdiag-samples-") as tmp:
            run = Run(args.prefix, Path(tmp))
            links_up(run)
            for name, make in SAMPLES.items():
                if args.only and name not in args.only:
                    continue
                print(f"{name}:")
                try:
                    make(run)
                except SystemExit as exc:  # one sample's failure leaves the others to be made
                    failed.append(name)
                    print(f"  FAILED: {exc}", file=sys.stderr)
                run.clear()
    finally:
        failures = lab_mod.down(args.prefix)
        if failures:
            print(f"lab down left: {failures}", file=sys.stderr)
    print(f"samples regenerated in {time.monotonic() - started:.0f} s" + (f"; failed: {', '.join(failed)}"
                                                                            if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
