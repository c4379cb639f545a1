"""Real traffic for the capture tests and benchmark: small Python servers and
clients run inside lab nodes (``ip netns exec``), plus iperf3."""

from __future__ import annotations

import subprocess
import time

# Echo server: answers every recv with the same bytes; keeps connections open.
SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512); print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# UDP echo server and client: N datagrams of SIZE bytes, each answered.
UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(65536); s.sendto(d, a)
"""
UDP_RR = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
for _ in range(int(sys.argv[3])):
    s.sendto(b"u" * int(sys.argv[4]), (sys.argv[1], int(sys.argv[2])))
    try: s.recvfrom(65536)
    except socket.timeout: pass
print("done")
"""

# Request/response client: N round trips of SIZE bytes on one connection.
RR = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n, size = int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    s.sendall(b"x" * size); got = 0
    while got < size: got += len(s.recv(65536))
s.close(); print("done")
"""

# Open N connections at once (non-blocking), keep them HOLD seconds, close.
MANY = r"""
import socket, sys, time
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.socket(); s.setblocking(False); s.connect_ex((host, port)); socks.append(s)
time.sleep(hold)
for s in socks: s.close()
print("done")
"""


class Server:
    def __init__(self, netns: str, port: int, code: str = SERVER) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "python3", "-c", code, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_in(netns: str, code: str, *args, timeout: float = 60) -> str:
    r = subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", code, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def iperf3(client_ns: str, server_ns: str, server_ip: str, *, seconds: float, rate: str, udp: bool = False,
           port: int = 5399, length: int = 1200, streams: int = 1) -> None:
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        argv = ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds),
                "-b", rate, "-l", str(length), "-P", str(streams)]
        if udp:
            argv.append("-u")
        deadline = time.monotonic() + 5
        while True:  # the server needs a moment to listen
            r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.returncode == 0, r.stderr + r.stdout
    finally:
        srv.kill()
        srv.wait()
