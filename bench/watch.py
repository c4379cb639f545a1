"""Benchmark: `vnetdiag watch` cycles and /metrics scrapes on 100 namespaces x 10
interfaces, against the shell loop a user would script, in one run.

    sudo .venv/bin/python bench/watch.py [--namespaces 100] [--pairs 5] [--cycles 720] [--scrapes 10]

Builds the topology of bench/counters.py (prefix "wchb-"), then measures:
  cycle:   one Watcher.cycle() (snapshot, delta, the four detectors, journal):
           CPU time (user+system of this process) and wall time, median;
  memory:  RSS after 50 cycles and after --cycles cycles (720 = one hour at
           the default 5 s interval: the hour-equivalent);
  scrape:  GET /metrics from the exporter inside watch (latest snapshot) and
           from `vnetdiag export`'s collector (fresh snapshot per scrape);
  shell:   one round of `ip -s -s -j link; tc -s -j qdisc; nstat -asz` per
           namespace (bench/counters.py's shell_round), the public-tool baseline.
Targets (issue 9): cycle < 100 ms, flat memory, scrape < 0.5 s.
Namespaces are journaled before they are made and removed on every exit path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import counters as topo  # noqa: E402  (bench/counters.py: the topology builder)

topo.PREFIX = "wchb-"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=720, help="cycles for the memory measurement (720 = 1 h at 5 s)")
    ap.add_argument("--scrapes", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/watch.py: needs root (it builds namespaces)", file=sys.stderr)
        return 3
    return topo.on_topology("bench-watch", args.namespaces, args.pairs, lambda names: run(names, args))


def run(names: list[str], args) -> int:
    from vnetdiag.collect import Collector
    from vnetdiag.export.metrics import Filters
    from vnetdiag.export.server import MetricsServer, live_source
    from vnetdiag.model.watch import WatchConfig
    from vnetdiag.watch.journal import AlertJournal
    from vnetdiag.watch.loop import Watcher

    journal_path = Path(f"/tmp/bench-watch-{os.getpid()}.jsonl")
    conf = WatchConfig(namespaces=(topo.PREFIX + "*",), journal=str(journal_path))
    w = Watcher(conf, journal=AlertJournal(journal_path))
    w.start()
    cpu, wall = [], []
    rss_50 = None
    n_if = 0
    for i in range(args.cycles):
        c0, t0 = time.process_time(), time.perf_counter()
        r = w.cycle()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
        n_if = len(r.snapshot.interfaces)
        if i == 49:
            rss_50 = rss_kib()
    rss_end = rss_kib()
    server = MetricsServer(w.exporter_source(), Filters(), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.port}/metrics"
    inside, inside_cpu, size = [], [], 0
    for _ in range(args.scrapes):
        c0, t0 = time.process_time(), time.perf_counter()
        body = urllib.request.urlopen(url, timeout=30).read()
        inside.append(time.perf_counter() - t0)
        inside_cpu.append(time.process_time() - c0)
        size = len(body)
    server.close()
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    with Collector(only=lambda ns: (ns.name or "").startswith(topo.PREFIX)) as col:
        server = MetricsServer(live_source(col), Filters(), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.port}/metrics"
        fresh, fresh_cpu = [], []
        for _ in range(args.scrapes):
            c0, t0 = time.process_time(), time.perf_counter()
            urllib.request.urlopen(url, timeout=30).read()
            fresh.append(time.perf_counter() - t0)
            fresh_cpu.append(time.process_time() - c0)
        server.close()
    w.close("bench done")
    alerts = sum(1 for line in journal_path.read_text().splitlines() if '"type": "alert"' in line)
    journal_path.unlink()
    shell = [topo.shell_round(names) for _ in range(2)]
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"load average before the shell round: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"topology: {n_if} interfaces in {len(names)} namespaces; {samples} samples per scrape ({size / 1024:.0f} KiB)")
    print(f"watch cycle: CPU median {ms(cpu):.1f} ms (min {min(cpu) * 1000:.1f}, max {max(cpu) * 1000:.1f}), "
          f"wall median {ms(wall):.1f} ms over {len(cpu)} cycles (target < 100 ms); alerts raised: {alerts}")
    print(f"RSS: {rss_50 / 1024:.1f} MiB after 50 cycles, {rss_end / 1024:.1f} MiB after {len(cpu)} cycles "
          f"(growth {(rss_end - rss_50) / 1024:+.1f} MiB; target flat)")
    print(f"/metrics inside watch (latest snapshot): wall median {ms(inside):.0f} ms (max {max(inside) * 1000:.0f}), "
          f"CPU median {ms(inside_cpu):.0f} ms; vnetdiag export (fresh snapshot per scrape): wall median "
          f"{ms(fresh):.0f} ms (max {max(fresh) * 1000:.0f}), CPU median {ms(fresh_cpu):.0f} ms (target < 500 ms)")
    print(f"shell loop (ip -s -s -j link; tc -s -j qdisc; nstat -asz per namespace), one round: median "
          f"{ms(shell):.0f} ms: a watch cycle is {statistics.median(shell) / statistics.median(wall):.0f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
