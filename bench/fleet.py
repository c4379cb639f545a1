"""Benchmark of the fleet (run as root, takes about two minutes):

    sudo .venv/bin/python bench/fleet.py [--exporters 20] [--seconds 20] [--rounds 3] [--only scrape|diagnose]

1. Scrape cost: ``--exporters`` simulated hosts (testing/promsim.py), each
   with its own ``vnetdiag export --drops`` on loopback and UDP traffic with
   some drops, scraped every second by Debian's prometheus for ``--seconds``.
   Reports Prometheus' own ``scrape_duration_seconds`` per target (median over
   targets of the mean over the window) and samples per scrape; as references
   in the same run, ``curl`` of the same endpoints one after the other (the
   HTTP fetch alone, no parsing or storing) and Prometheus scraping its own
   /metrics (a Go client_golang exporter, like node_exporter). Also the CPU
   the exporters (and their bpftrace) spent per scrape, from /proc.
2. Multi-host diagnose: three simulated hosts with their own sshd
   (testing/fleetsim.py); ``diagnose --hosts FILE --from h1:G1 --to h3:G3``
   against the local ``diagnose --from G1 --to G3`` on the same path (the
   namespaces are on this machine either way), interleaved rounds; reports
   median wall times, the ratio, and where the fleet run's extra time went
   (its ``timings_s``: agent start over ssh, trace start, collection, close).

Machine noise (other users of the machine) shows up in the spread; numbers are
what was measured, nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vnetdiag.testing.promsim import DropHosts, Prometheus
from vnetdiag.testing.simbase import wait_for

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))


def cpu_s(pids: list[int]) -> float:
    """utime + stime of ``pids`` and their children (bpftrace), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    family = set(pids)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(p.name) in family or int(fields[1]) in family:
                total += int(fields[11]) + int(fields[12])
    return total / tick


def curl_s(urls: list[str], rounds: int) -> list[float]:
    """Seconds per fetch of each URL by curl (time_total), ``rounds`` passes."""
    out = []
    for _ in range(rounds):
        for u in urls:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", u], capture_output=True,
                               text=True, check=True)
            out.append(float(r.stdout))
    return out


def scrape_cost(prefix: str, n: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DropHosts(Path(tmp), prefix=prefix, hosts=n) as sim, \
            sim.traffic(delivered_per_s=100, refused_per_s=10):
        with Prometheus(Path(tmp) / "prom", targets=sim.targets(), scrape_self=True) as prom:
            prom.wait(lambda: len(prom.query("up == 1")) == n + 1, deadline_s=60, what=f"{n + 1} targets up")
            pids = [p.pid for p in sim.exporters.values()]
            c0, t0 = cpu_s(pids), time.monotonic()
            wait_for(lambda: time.monotonic() - t0 >= seconds, deadline_s=seconds + 5, what="the window", poll_s=0.5)
            window = f"{int(seconds)}s"
            c1 = cpu_s(pids)
            scrapes = float(prom.query(f'sum(count_over_time(up{{job="vnetdiag"}}[{window}]))')[0]["value"][1])
            dur = {r["metric"]["instance"]: float(r["value"][1]) for r in
                   prom.query(f'avg_over_time(scrape_duration_seconds{{job="vnetdiag"}}[{window}])')}
            samples = [float(r["value"][1]) for r in prom.query('scrape_samples_scraped{job="vnetdiag"}')]
            self_dur = float(prom.query(f'avg_over_time(scrape_duration_seconds{{job="self"}}[{window}])')[0]
                             ["value"][1])
            self_samples = float(prom.query('scrape_samples_scraped{job="self"}')[0]["value"][1])
            curl = curl_s([sim.url(i) for i in range(1, n + 1)], rounds=3)
            drops = prom.query('sum(vnetdiag_kernel_drops_total)')
    med = statistics.median(dur.values())
    return {"exporters": n, "window_s": seconds, "scrapes": int(scrapes),
            "prometheus_scrape_ms": {"median": med * 1e3, "max": max(dur.values()) * 1e3},
            "samples_per_scrape": statistics.median(samples),
            "curl_ms": {"median": statistics.median(curl) * 1e3, "max": max(curl) * 1e3},
            "ratio_prometheus_over_curl": med / statistics.median(curl),
            "self_scrape_ms": self_dur * 1e3, "self_samples": self_samples,
            "us_per_sample": {"vnetdiag": med / statistics.median(samples) * 1e6,
                              "prometheus_self": self_dur / self_samples * 1e6},
            "exporter_cpu_ms_per_scrape": (c1 - c0) / scrapes * 1e3,
            "kernel_drops_counted": float(drops[0]["value"][1]) if drops else 0}


def print_scrape(r: dict) -> None:
    print(f"# scrape cost: {r['exporters']} vnetdiag export --drops exporters on loopback, Prometheus every 1 s "
          f"for {r['window_s']:g} s ({r['scrapes']} scrapes, {r['kernel_drops_counted']:.0f} drops counted)")
    p, c = r["prometheus_scrape_ms"], r["curl_ms"]
    print(f"prometheus scrape_duration   median {p['median']:.2f} ms  max {p['max']:.2f} ms  "
          f"{r['samples_per_scrape']:.0f} samples/scrape")
    print(f"curl of the same endpoints   median {c['median']:.2f} ms  max {c['max']:.2f} ms")
    print(f"ratio prometheus/curl        {r['ratio_prometheus_over_curl']:.2f}")
    u = r["us_per_sample"]
    print(f"prometheus self-scrape (Go)  {r['self_scrape_ms']:.2f} ms  {r['self_samples']:.0f} samples")
    print(f"per sample                   vnetdiag {u['vnetdiag']:.1f} us  Go self {u['prometheus_self']:.1f} us  "
          f"ratio {u['vnetdiag'] / u['prometheus_self']:.1f}")
    print(f"exporter CPU per scrape      {r['exporter_cpu_ms_per_scrape']:.2f} ms (exporter + its bpftrace)")


def diagnose_overhead(prefix: str, rounds: int, duration_s: float) -> dict:
    from vnetdiag.testing.fleetsim import SimFleet

    window = ["--duration", f"{duration_s:g}", "--streams", "8"]
    runs: dict[str, list[float]] = {"local": [], "fleet": []}
    timings: list[dict] = []
    hosts: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, SimFleet(Path(tmp), prefix=prefix, hosts=3) as sim:
        argv = {"local": ["--json", "diagnose", "--from", sim.guest(1), "--to", sim.guest(3), *window],
                "fleet": ["--json", "diagnose", "--hosts", str(sim.inventory), "--from", f"h1:{sim.guest(1)}",
                          "--to", f"h3:{sim.guest(3)}", *window]}
        for _ in range(rounds):
            for mode in ("local", "fleet"):
                t0 = time.monotonic()
                r = subprocess.run([VNETDIAG, *argv[mode]], capture_output=True, text=True, timeout=300)
                runs[mode].append(time.monotonic() - t0)
                if r.returncode not in (0, 1):
                    raise RuntimeError(f"{mode} diagnose failed: {r.stderr}")
                if mode == "fleet":
                    doc = json.loads(r.stdout)
                    timings.append(doc["timings_s"])
                    hosts = doc["hosts"]
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"rounds": rounds, "duration_s": duration_s, "runs_s": runs, "median_s": med,
            "ratio": med["fleet"] / med["local"], "extra_s": med["fleet"] - med["local"],
            "fleet_timings_s": {k: statistics.median(t[k] for t in timings) for k in timings[0]},
            "round_trips": {h["name"]: h["round_trips"] for h in hosts},
            "clock_rtt_us": {h["name"]: h["clock_rtt_ns"] / 1e3 for h in hosts}}


def print_diagnose(r: dict) -> None:
    print(f"# multi-host diagnose: 3 simulated hosts with sshd, h1 guest -> h3 guest, {r['duration_s']:g} s window, "
          f"{r['rounds']} rounds interleaved")
    for mode in ("local", "fleet"):
        print(f"{mode:6s} median {r['median_s'][mode]:.2f} s  runs {[round(x, 2) for x in r['runs_s'][mode]]}")
    print(f"ratio fleet/local {r['ratio']:.2f}  extra {r['extra_s']:+.2f} s")
    print("fleet timings (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in r["fleet_timings_s"].items()))
    print(f"round trips per agent {r['round_trips']}; clock exchange rtt (us) "
          + ", ".join(f"{k} {v:.0f}" for k, v in r["clock_rtt_us"].items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="flb")
    ap.add_argument("--exporters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0, help="diagnose window, seconds")
    ap.add_argument("--only", choices=("all", "scrape", "diagnose"), default="all")
    args = ap.parse_args()
    if args.only in ("all", "scrape"):
        print_scrape(scrape_cost(args.prefix, args.exporters, args.seconds))
    if args.only in ("all", "diagnose"):
        print_diagnose(diagnose_overhead(args.prefix, args.rounds, args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
