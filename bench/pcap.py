"""Benchmark: `vnetdiag pcap --json` against `tshark -q -z conv,tcp` on the same
capture of >= 1,000,000 packets of real lab traffic, in one run.

    sudo VNETDIAG_LAB_PREFIX=pcb VNETDIAG_STATE_DIR=/run/vnetdiag-pcb \
        .venv/bin/python bench/pcap.py [--packets 1000000] [--file CAPTURE] [--repeat 3]

Without --file it builds the default lab (prefix from VNETDIAG_LAB_PREFIX),
captures vm1's NIC with tcpdump (through vnetdiag.collect.capture, snap length
128) while iperf3 streams small TCP segments (TCP_NODELAY, 200-byte writes,
across the vxlan overlay to vm3) plus request/response traffic, until the
capture holds --packets packets; then tears the lab down. Each tool runs
--repeat times as a separate process; the best wall time counts, and the peak
resident memory of that process is reported (getrusage of the child).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def run_timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run of argv. CPU time is
    reported too because the machine is shared: wall time includes waiting."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {r.stderr.strip()[:500]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def peak_rss_mib(argv: list[str]) -> int:
    """Peak RSS of one run measured by a fresh wrapper process (exact per run)."""
    code = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,"
            "stderr=subprocess.DEVNULL,check=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) // 1024


def make_capture(path: Path, packets: int) -> None:
    from pcap_traffic import RR, Server, run_in

    from vnetdiag import lab as lab_mod
    from vnetdiag.collect.capture import capture
    from vnetdiag.collect.pcap import PcapReader

    lab = lab_mod.up()
    try:
        vm1, vm3 = lab.netns("vm1"), lab.netns("vm3")
        srv = Server(vm3, 7200)

        def traffic():
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                iperf = subprocess.Popen(["ip", "netns", "exec", vm3, "iperf3", "-s", "-1", "-p", "5299"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)
                subprocess.run(["ip", "netns", "exec", vm1, "iperf3", "-c", lab.ip("vm3"), "-p", "5299", "-t", "8",
                                "-N", "-l", "200", "-P", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=60)
                iperf.kill()
                iperf.wait()
                run_in(vm1, RR, lab.ip("vm3"), 7200, 2000, 100)
                have = path.parent / f"{vm1}-eth0.pcap"
                n = sum(len(b) for b in PcapReader(have))
                print(f"  capture has {n} packets", file=sys.stderr)
                if n >= packets:
                    return

        capture([(vm1, "eth0")], directory=path.parent, snaplen=128, max_packets=packets, while_running=traffic)
        (path.parent / f"{vm1}-eth0.pcap").rename(path)
        srv.close()
    finally:
        lab_mod.down(lab.prefix)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, help="use this capture instead of recording one")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the recorded capture at this path")
    ap.add_argument("--verify", action="store_true",
                    help="also check conversations and retransmitted frames against tshark (slow)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pcap-bench-"))
    path = args.file
    if path is None:
        path = args.keep or tmp / "bench.pcap"
        print(f"recording {args.packets} packets of lab traffic ...", file=sys.stderr)
        make_capture(path, args.packets)
    size_mb = path.stat().st_size / 1e6

    from vnetdiag.collect.pcap import PcapReader

    packets = sum(len(b) for b in PcapReader(path))
    vnetdiag = [sys.executable, "-m", "vnetdiag.cli.main", "pcap", str(path), "--json"]
    tshark = ["tshark", "-n", "-q", "-z", "conv,tcp", "-r", str(path)]
    load = os.getloadavg()[0]
    ours_runs = [run_timed(vnetdiag) for _ in range(args.repeat)]
    theirs_runs = [run_timed(tshark) for _ in range(args.repeat)]
    ours, ours_cpu = min(w for w, _ in ours_runs), min(c for _, c in ours_runs)
    theirs, theirs_cpu = min(w for w, _ in theirs_runs), min(c for _, c in theirs_runs)
    ours_mem = peak_rss_mib(vnetdiag)
    theirs_mem = peak_rss_mib(tshark)

    # In-process: the analysis alone, without interpreter and import start-up.
    from vnetdiag.capture import analyze_file

    t0 = time.perf_counter()
    rep = analyze_file(path)
    inproc = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyze_file(path)  # again: memory already mapped, as in a long-running process
    warm = time.perf_counter() - t0

    print(f"capture: {path} ({size_mb:.1f} MB, {packets} packets, {len(rep.conversations)} conversations, "
          f"{len(rep.retransmissions)} retransmissions)")
    print(f"load average at start: {load:.2f} on {os.cpu_count()} CPUs")
    print(f"vnetdiag pcap --json  : wall {ours:6.3f} s ({packets / ours / 1e6:5.2f} Mpackets/s)  "
          f"CPU {ours_cpu:6.3f} s ({packets / ours_cpu / 1e6:5.2f} Mpackets/s)  peak RSS {ours_mem} MiB")
    print(f"  analysis in-process : wall {inproc:6.3f} s ({packets / inproc / 1e6:5.2f} Mpackets/s, "
          f"no interpreter start-up or imports); second run {warm:6.3f} s ({packets / warm / 1e6:5.2f} Mpackets/s)")
    print(f"tshark -q -z conv,tcp : wall {theirs:6.3f} s ({packets / theirs / 1e6:5.2f} Mpackets/s)  "
          f"CPU {theirs_cpu:6.3f} s  peak RSS {theirs_mem} MiB")
    print(f"speed-up: wall {theirs / ours:.1f}x, CPU {theirs_cpu / ours_cpu:.1f}x "
          f"(best of {args.repeat} runs each, same file, same run)")
    if args.verify:
        import pcap_reference as ref

        rows = ref.conv(str(path), "tcp")
        mine = {frozenset((c.a, c.b)): c for c in rep.conversations if c.proto == "tcp"}
        same = len(rows) == len(mine) and all(
            sorted((m.packets_ab, m.packets_ba)) == sorted((r["frames_ab"], r["frames_ba"]))
            for r in rows for m in [mine.get(frozenset((r["a"], r["b"])))] if m is not None)
        theirs = ref.retransmitted_frames(str(path))
        ours_set = {r.frame for r in rep.retransmissions}
        print(f"verify: conv,tcp frames equal: {same}; retransmitted frames: vnetdiag {len(ours_set)}, "
              f"tshark {len(theirs)}, differing {len(ours_set ^ theirs)}")
    if args.file is None and args.keep is None:
        path.unlink()
    os.rmdir(tmp) if not any(tmp.iterdir()) else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
