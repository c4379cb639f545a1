"""Record the golden captures of this directory from real lab traffic.

    sudo VNETDIAG_LAB_PREFIX=pcp VNETDIAG_STATE_DIR=/run/vnetdiag-pcp \
        .venv/bin/python tests/golden/pcap/record.py

(``dsack-spurious.pcap`` is frames 349800-350600 of a capture recorded by
bench/pcap.py --keep, cut with ``editcap -F pcap -r``: a spurious retransmission that
Wireshark's order of checks distinguishes from an out-of-order segment.)

Builds the default lab, runs traffic with and without faults, captures with
tcpdump (through vnetdiag.collect.capture) and dumpcap, converts with mergecap,
and tears the lab down. Small snap lengths keep the files small; frame
lengths on the wire are kept by the format, so byte counts stay exact.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from pcap_traffic import MANY, RR, UDP_RR, UDP_SERVER, Server, run_in  # noqa: E402

from vnetdiag import lab as lab_mod  # noqa: E402
from vnetdiag.collect.capture import capture  # noqa: E402


def main() -> None:
    lab = lab_mod.up()
    try:
        vm1, vm3 = lab.netns("vm1"), lab.netns("vm3")
        srv = Server(vm3, 7100)
        usrv = Server(vm3, 7101, UDP_SERVER)
        try:
            # clean: TCP request/response, a UDP burst and pings, seen at vm1's NIC.
            def clean():
                run_in(vm1, RR, lab.ip("vm3"), 7100, 50, 200)
                run_in(vm1, UDP_RR, lab.ip("vm3"), 7101, 40, 300)
                lab.run("vm1", ["ping", "-c", "3", "-i", "0.05", lab.ip("vm3")])
            capture([(vm1, "eth0")], directory=HERE / "tmp", snaplen=128, while_running=clean)
            shutil.move(HERE / "tmp" / f"{vm1}-eth0.pcap", HERE / "clean.pcap")

            # loss: 3 % loss at hv1:vm1-p; the vxlan underlay (hv1:ul0) and vm1's NIC (nanosecond).
            f = lab.add_fault("loss", at="hv1:vm1-p", percent=3)
            def lossy():
                run_in(vm1, RR, lab.ip("vm3"), 7100, 60, 6000)
                run_in(vm1, RR, lab.ip("vm3"), 7100, 100, 100)
            capture([(lab.netns("hv1"), "ul0")], directory=HERE / "tmp", snaplen=200, while_running=lossy)
            shutil.move(HERE / "tmp" / f"{lab.netns('hv1')}-ul0.pcap", HERE / "loss-vxlan.pcap")
            capture([(vm1, "eth0")], directory=HERE / "tmp", snaplen=128, nano=True, while_running=lossy)
            shutil.move(HERE / "tmp" / f"{vm1}-eth0.pcap", HERE / "loss-nano.pcap")
            lab.clear_fault(f.id)

            # conntrack-full: more connections than the table holds: SYNs retransmitted at 1 s, 2 s.
            f = lab.add_fault("conntrack-full", at="hv1", max=40)
            def many():
                run_in(vm1, MANY, lab.ip("vm3"), 7100, 60, 3.6)
            capture([(vm1, "eth0")], directory=HERE / "tmp", snaplen=96, while_running=many)
            shutil.move(HERE / "tmp" / f"{vm1}-eth0.pcap", HERE / "conntrack-full.pcap")
            lab.clear_fault(f.id)
        finally:
            srv.close()
            usrv.close()

        # pcapng with two interfaces of different link types and resolutions:
        # vm1's NIC (Ethernet, microseconds) and hv1 "any" (Linux cooked v2, nanoseconds).
        hv1 = lab.netns("hv1")
        sll = HERE / "tmp" / "sll2.pcap"
        p = subprocess.Popen(["ip", "netns", "exec", hv1, "tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-s", "128",
                              "--time-stamp-precision=nano", "--immediate-mode", "-w", str(sll), "-Z", "root", "icmp"],
                             stderr=subprocess.PIPE)
        time.sleep(1.0)
        lab.run("vm1", ["ping", "-c", "3", "-i", "0.05", lab.ip("vm2")])
        p.terminate()
        p.wait()
        subprocess.run(["mergecap", "-F", "pcapng", "-w", str(HERE / "two-ifaces.pcapng"),
                        str(HERE / "clean.pcap"), str(sll)], check=True)
        with open(HERE / "loss-nano.pcap", "rb") as src, gzip.open(HERE / "loss-nano.pcap.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        (HERE / "loss-nano.pcap").unlink()
        shutil.rmtree(HERE / "tmp", ignore_errors=True)
    finally:
        lab_mod.down(lab.prefix)


V6_SERVER = r"""
import socket, threading
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7400)); s.listen(16); print("ready", flush=True)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::", 7401))
def udp():
    while True:
        d, a = u.recvfrom(65536); u.sendto(d, a)
threading.Thread(target=udp, daemon=True).start()
def serve(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
V6_CLIENT = r"""
import socket
s = socket.create_connection(("2001:db8:77::2", 7400), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(60):
    s.sendall(b"x" * 3000); got = 0
    while got < 3000: got += len(s.recv(65536))
s.close()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(0.5)
for _ in range(20):
    u.sendto(b"u" * 200, ("2001:db8:77::2", 7401))
    try: u.recvfrom(65536)
    except socket.timeout: pass
"""


def record_ipv6() -> None:
    """IPv6 TCP and UDP with 5 % loss (ip6tables statistic) between two namespaces
    of our own (the lab is IPv4): ipv6-loss.pcap."""
    from vnetdiag.system.undo import DeleteNetns, Journal

    journal = Journal("pcap-golden-ipv6").open()
    a, b = "pcg-6a", "pcg-6b"
    for ns in (a, b):
        journal.record(DeleteNetns(name=ns))
    sh = lambda *argv: subprocess.run(list(argv), check=True)  # noqa: E731
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "g6a", "netns", a, "type", "veth", "peer", "name", "g6b", "netns", b)
        sh("ip", "-n", a, "addr", "add", "2001:db8:77::1/64", "dev", "g6a", "nodad")
        sh("ip", "-n", b, "addr", "add", "2001:db8:77::2/64", "dev", "g6b", "nodad")
        for ns, dev in ((a, "g6a"), (b, "g6b")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", b, "ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "7400",
           "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP")
        srv = subprocess.Popen(["ip", "netns", "exec", b, "python3", "-c", V6_SERVER], stdout=subprocess.PIPE,
                               text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            capture([(a, "g6a")], directory=HERE / "tmp", snaplen=128, while_running=lambda: subprocess.run(
                ["ip", "netns", "exec", a, "python3", "-c", V6_CLIENT], check=True, timeout=60))
        finally:
            srv.kill()
            srv.wait()
        shutil.move(HERE / "tmp" / f"{a}-g6a.pcap", HERE / "ipv6-loss.pcap")
        shutil.rmtree(HERE / "tmp", ignore_errors=True)
    finally:
        journal.undo()


if __name__ == "__main__":
    main()
    record_ipv6()
