"""Benchmark: a full counter snapshot of 100 namespaces x 10 interfaces, vnetdiag
against the shell loop a user would write, in one run.

    sudo .venv/bin/python bench/counters.py [--namespaces 100] [--pairs 5] [--repeat 20] [--shell-repeat 3]

Builds NS namespaces (prefix "cntb-"), each with PAIRS veth pairs (2 x PAIRS
interfaces; every other namespace gets a tbf qdisc and an htb with two classes),
then times:
  vnetdiag: Collector.snapshot() repeated (sockets and /proc files kept open),
            also the first (cold) snapshot and topology discovery on it;
  shell:    for each namespace: ip -s -s -j link; tc -s -j qdisc; nstat -asz
            (what `ip netns exec` users script), repeated.
Prints both medians, the ratio and the peak memory. Every namespace is journaled
(system/undo.py) before it is made and removed on every exit path; if the
process is killed, `vnetdiag cleanup` (or the next run) removes them.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc

from vnetdiag.system.undo import DeleteNetns, Journal, all_journals

PREFIX = "cntb-"


def build(n_ns: int, pairs: int, journal: Journal) -> list[str]:
    names = [f"{PREFIX}{i:03d}" for i in range(n_ns)]
    for name in names:
        journal.record(DeleteNetns(name=name))
    subprocess.run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names),
                   text=True, check=True, capture_output=True)
    links = "".join(f"link add b{p}a type veth peer name b{p}b\nlink set b{p}a up\nlink set b{p}b up\n"
                    for p in range(pairs))
    for name in names:
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=links, text=True, check=True, capture_output=True)
    for i, name in enumerate(names):
        if i % 2:
            continue
        cmds = ("qdisc add dev b0a root tbf rate 100mbit burst 32k latency 50ms\n"
                "qdisc add dev b1a root handle 1: htb default 10\n"
                "class add dev b1a parent 1: classid 1:10 htb rate 10mbit\n"
                "class add dev b1a parent 1: classid 1:20 htb rate 20mbit\n")
        subprocess.run(["tc", "-n", name, "-batch", "-"], input=cmds, text=True, check=True, capture_output=True)
    return names


def shell_round(names: list[str]) -> float:
    t = time.perf_counter()
    for name in names:
        subprocess.run(["ip", "-n", name, "-s", "-s", "-j", "link"], check=True, capture_output=True)
        subprocess.run(["tc", "-n", name, "-s", "-j", "qdisc"], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", name, "nstat", "-asz"], check=True, capture_output=True)
    return time.perf_counter() - t


def _status(field: str) -> int:
    """A /proc/self/status field in KiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def shell_peak_kib(names: list[str]) -> int:
    """Largest peak RSS of the shell tools (GNU time's %M), on a few namespaces."""
    peak = 0
    for name in names:
        for argv in (["ip", "-n", name, "-s", "-s", "-j", "link"], ["tc", "-n", name, "-s", "-j", "qdisc"],
                     ["ip", "netns", "exec", name, "nstat", "-asz"]):
            r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True, check=True)
            peak = max(peak, int(r.stderr.strip().splitlines()[-1]))
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=5, help="veth pairs per namespace (2 interfaces each)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--shell-repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/counters.py: needs root (it builds namespaces)", file=sys.stderr)
        return 3
    return on_topology("bench-counters", args.namespaces, args.pairs, lambda names: run(names, args))


def on_topology(owner: str, namespaces: int, pairs: int, body) -> int:
    """Build the benchmark topology (journaled), run ``body(names)``, and always
    remove it, also what a killed earlier run of the same benchmark left."""
    for j in all_journals():
        if j.owner.startswith(owner + "-") and not j.owner_alive():
            j.undo()
    journal = Journal(f"{owner}-{os.getpid()}").open()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        t = time.perf_counter()
        names = build(namespaces, pairs, journal)
        print(f"built {len(names)} namespaces x {2 * pairs} veth interfaces in {time.perf_counter() - t:.1f} s")
        return body(names)
    finally:
        failures = journal.undo()
        if failures:
            print(f"cleanup failures: {failures}", file=sys.stderr)


def run(names: list[str], args) -> int:
    from vnetdiag.collect import Collector

    wanted = set(names)
    only = lambda ns: ns.name in wanted  # noqa: E731
    with Collector(only=only) as col:
        t = time.perf_counter()
        first = col.snapshot()
        cold = time.perf_counter() - t
        times, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            snap = col.snapshot()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        tracemalloc.start()  # a separate, untimed pass: tracing allocations slows them
        col.snapshot()
        _cur, py_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        topo_s = None
        try:
            from vnetdiag.topology import discover
            t = time.perf_counter()
            graph = discover(snap, col.pool)
            topo_s = time.perf_counter() - t
            topo_n = (len(graph.nodes), len(graph.edges))
        except ImportError:
            pass
    n_if = len(snap.interfaces)
    n_q = sum(len(i.qdiscs) for i in snap.interfaces)
    hwm = _status("VmHWM")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    shell = [shell_round(names) for _ in range(args.shell_repeat)]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shell_cpu = ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / len(shell)
    tool_peak = shell_peak_kib(names[:10])
    ours, theirs = statistics.median(times), statistics.median(shell)
    print(f"interfaces: {n_if} in {len(snap.namespaces)} namespaces, qdiscs+classes: {n_q}, "
          f"problems: {len(snap.problems)}, first (cold) snapshot {cold * 1000:.1f} ms")
    print(f"vnetdiag snapshot: median {ours * 1000:.1f} ms, min {min(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms over {len(times)} repeats")
    print(f"shell loop (ip -s -s -j link; tc -s -j qdisc; nstat -asz per namespace): median "
          f"{theirs * 1000:.0f} ms, min {min(shell) * 1000:.0f} ms over {len(shell)} repeats")
    print(f"ratio (median wall time): vnetdiag is {theirs / ours:.1f}x faster")
    ours_cpu = statistics.median(cpu)
    print(f"CPU time per round (user+system; steadier than wall time on a busy machine): vnetdiag "
          f"{ours_cpu * 1000:.1f} ms, shell {shell_cpu * 1000:.0f} ms, ratio {shell_cpu / ours_cpu:.1f}x")
    print(f"peak memory: vnetdiag process peak RSS {hwm / 1024:.1f} MiB (Python heap peak of one snapshot "
          f"{py_peak / 2**20:.1f} MiB); shell tools: largest single process peak RSS {tool_peak / 1024:.1f} MiB "
          f"(GNU time), one process at a time")
    if topo_s is not None:
        print(f"topology discovery on that snapshot: {topo_s * 1000:.1f} ms ({topo_n[0]} nodes, {topo_n[1]} edges)")
    assert first.interfaces
    return 0


if __name__ == "__main__":
    sys.exit(main())
