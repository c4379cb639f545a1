"""Benchmark: vnetdiag probe tcp-rr against sockperf ping-pong, in one run, on the
same paths: loopback, and lab guest vm1 to guest vm3 (over the VXLAN overlay).

    sudo .venv/bin/python bench/probe.py [--duration 4] [--repeat 3] [--no-lab]

For each path, alternately REPEAT times:
  sockperf: `sockperf server --tcp` and `sockperf ping-pong --tcp -m 14 --full-rtt`
            (14 bytes is sockperf's smallest message; --full-rtt makes it report
            round trips, not the half round trips it prints by default);
  vnetdiag: `vnetdiag serve` and `vnetdiag probe --pattern tcp-rr --streams 1
            --request-bytes 1 --response-bytes 1 --json` (10- and 6-byte frames).
Both servers run as their own processes, as do both clients. Reported: the
median transactions/s and p50 round trip of each, and the ratios (vnetdiag /
sockperf). Then the aggregate rate of `--streams 16` over 1 and 2 workers.

The lab (prefix $VNETDIAG_LAB_PREFIX, default "prb") is built if it is not up
and left up for reuse; `vnetdiag lab down` removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))
_SP_VALID = re.compile(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)")
_SP_P50 = re.compile(r"percentile 50\.000 =\s+([\d.]+)")


def _in(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def _wait_port(netns: str | None, port: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        out = subprocess.run(_in(netns, ["ss", "-Hltn", f"sport = :{port}"]), capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Background:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sockperf(host: str, port: int, duration: float, netns: str | None) -> tuple[float, float]:
    """(transactions/s, p50 round trip us) of one sockperf ping-pong run."""
    out = subprocess.run(_in(netns, ["sockperf", "ping-pong", "--tcp", "-i", host, "-p", str(port), "-m", "14",
                                     "-t", str(int(duration)), "--full-rtt"]),
                         capture_output=True, text=True, timeout=duration + 30).stdout
    m, p50 = _SP_VALID.search(out), _SP_P50.search(out)
    if not m or not p50:
        raise RuntimeError(f"cannot parse sockperf output:\n{out}")
    return int(m.group(3)) / float(m.group(1)), float(p50.group(1))


def vnetdiag(host: str, port: int, duration: float, netns: str | None, streams: int = 1,
             workers: int = 1) -> tuple[float, float]:
    argv = [VNETDIAG, "probe", host, "--port", str(port), "--pattern", "tcp-rr", "--streams", str(streams),
            "--workers", str(workers), "--duration", str(duration), "--warmup", "0.5", "--json"]
    if netns:
        argv += ["--netns", netns]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"vnetdiag probe failed: {out.stderr}")
    doc = json.loads(out.stdout)
    return doc["rate_per_s"], doc["latency_us"]["p50"]


def bench_path(name: str, host: str, server_ns: str | None, client_ns: str | None, args) -> dict:
    sp_port, vd_port = 11111, 7736
    sp_srv = Background(_in(server_ns, ["sockperf", "server", "--tcp", "-i", host, "-p", str(sp_port)]))
    vd_argv = [VNETDIAG, "serve", "--bind", host, "--port", str(vd_port)]
    vd_srv = Background(vd_argv + (["--netns", server_ns] if server_ns else []))
    try:
        _wait_port(server_ns, sp_port)
        _wait_port(server_ns, vd_port)
        sp, vd = [], []
        for _ in range(args.repeat):
            sp.append(sockperf(host, sp_port, args.duration, client_ns))
            vd.append(vnetdiag(host, vd_port, args.duration, client_ns))
        agg = {w: vnetdiag(host, vd_port, args.duration, client_ns, streams=16, workers=w)[0] for w in (1, 2)}
    finally:
        sp_srv.stop()
        vd_srv.stop()
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    row = {"path": name, "sockperf_tps": med(sp, 0), "sockperf_p50_rtt_us": med(sp, 1),
           "vnetdiag_tps": med(vd, 0), "vnetdiag_p50_us": med(vd, 1),
           "agg16_1worker_tps": agg[1], "agg16_2workers_tps": agg[2], "runs": {"sockperf": sp, "vnetdiag": vd}}
    row["tps_ratio"] = row["vnetdiag_tps"] / row["sockperf_tps"]
    row["p50_ratio"] = row["vnetdiag_p50_us"] / row["sockperf_p50_rtt_us"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-lab", action="store_true", help="loopback only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [bench_path("loopback", "127.0.0.1", None, None, args)]
    if not args.no_lab:
        os.environ.setdefault("VNETDIAG_LAB_PREFIX", "prb")
        from vnetdiag import lab as lab_mod

        try:
            lab = lab_mod.attach(os.environ["VNETDIAG_LAB_PREFIX"])
        except Exception:  # noqa: BLE001 - not up yet
            lab = lab_mod.up()
        rows.append(bench_path("lab vm1 -> vm3", lab.ip("vm3"), lab.netns("vm3"), lab.netns("vm1"), args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"tcp request/response, 1 stream, {args.duration:g} s x {args.repeat} runs each (medians); "
          f"{os.cpu_count()} cores")
    print(f"{'path':<16} {'sockperf tx/s':>13} {'p50 RTT':>9} {'vnetdiag tx/s':>13} {'p50':>9} "
          f"{'tx/s ratio':>10} {'p50 ratio':>9} {'16 str/1 wkr':>12} {'16 str/2 wkr':>12}")
    for r in rows:
        print(f"{r['path']:<16} {r['sockperf_tps']:>13,.0f} {r['sockperf_p50_rtt_us']:>7.1f}us "
              f"{r['vnetdiag_tps']:>13,.0f} {r['vnetdiag_p50_us']:>7.1f}us {r['tps_ratio']:>10.2f} "
              f"{r['p50_ratio']:>9.2f} {r['agg16_1worker_tps']:>12,.0f} {r['agg16_2workers_tps']:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
