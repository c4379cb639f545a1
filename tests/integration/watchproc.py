"""Helpers for watch/export integration tests: the watch as a real process, its
journal, lab traffic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

VNETDIAG = str(Path(sys.executable).with_name("vnetdiag"))

UDP_LOAD = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nb=bytes(1400)\n"
            "pps=int(sys.argv[2]);end=time.monotonic()+float(sys.argv[3]);t=time.monotonic()\n"
            "while t<end:\n s.sendto(b,(sys.argv[1],9))\n t+=1/pps\n d=t-time.monotonic()\n"
            " time.sleep(d) if d>0 else None\n")


def udp_load(lab, src: str, dst: str, pps: int = 1000, duration_s: float = 10.0) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.netns(src), "python3", "-c", UDP_LOAD, lab.ip(dst),
                             str(pps), str(duration_s)])


def pinger(lab, src: str, dst: str, interval_s: float = 0.2) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.netns(src), "ping", "-q", "-i", str(interval_s),
                             lab.ip(dst)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(cond, timeout_s: float, what: str, step_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


class WatchProc:
    """`vnetdiag watch` with a config file and a journal in tmp_path."""

    def __init__(self, tmp_path: Path, config: str, *args: str, name: str = "watch") -> None:
        self.conf = tmp_path / f"{name}.toml"
        self.conf.write_text(config)
        self.journal = tmp_path / f"{name}.jsonl"
        self.out = open(tmp_path / f"{name}.out", "w+")
        self.err = tmp_path / f"{name}.err"
        self.proc = subprocess.Popen([VNETDIAG, "watch", "--config", str(self.conf), "--journal", str(self.journal),
                                      *args], stdout=self.out, stderr=open(self.err, "w"), env=dict(os.environ))
        wait_for(lambda: self.lines("start") or self.proc.poll() is not None, 30, "watch to start")
        assert self.proc.poll() is None, self.err.read_text()

    def lines(self, line_type: str | None = None) -> list[dict]:
        if not self.journal.exists():
            return []
        out = []
        for line in self.journal.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if line_type is None or d["type"] == line_type:
                out.append(d)
        return out

    def alerts(self, change: str = "raised", detector: str | None = None) -> list[dict]:
        return [d for d in self.lines("alert") if d["change"] == change
                and (detector is None or d["alert"]["detector"] == detector)]

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never leave a watch behind, even when it did not stop
            self.proc.wait()
            raise
        finally:
            self.out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
