"""Record the golden captures of this directory from real lab traffic.

    sudo VNETDIAG_LAB_PREFIX=pcp VNETDIAG_STATE_DIR=/run/vnetdiag-pcp \
        .venv/bin/python tests/golden/pcap/record.py

(``dsack-spurious.pcap`` is frames 349800-350600 of a capture recorded by
bench/pcap.py --keep, cut with ``editcap -r``: a spurious retransmission that
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


if __name__ == "__main__":
    main()
