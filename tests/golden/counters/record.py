"""Re-record the netlink golden inputs (root, with the lab up):

    VNETDIAG_LAB_PREFIX=cnt .venv/bin/python tests/golden/counters/record.py cnt-hv1

Writes links.nl / qdiscs.nl (raw RTM_NEWLINK / RTM_NEWQDISC payloads, each
prefixed with its 4-byte length) and, read right after, what iproute2 says
about the same namespace (ip -s -s -d -j link, tc -s -j qdisc). The namespace
must be quiet so both reads agree.
"""

import struct
import subprocess
import sys
from pathlib import Path

from vnetdiag.system import rtnl

here = Path(__file__).parent
ns = sys.argv[1]
nl = rtnl.open_in(f"/run/netns/{ns}")
for name, msgs in (("links", rtnl.dump_links(nl)), ("qdiscs", rtnl.dump_qdiscs(nl))):
    with open(here / f"{name}.nl", "wb") as f:
        for _t, payload in msgs:
            f.write(struct.pack("=I", len(payload)) + payload)
(here / "ip_link.json").write_text(subprocess.run(["ip", "-n", ns, "-s", "-s", "-d", "-j", "link"],
                                                  capture_output=True, text=True, check=True).stdout)
(here / "tc_qdisc.json").write_text(subprocess.run(["tc", "-n", ns, "-s", "-j", "qdisc", "show"],
                                                   capture_output=True, text=True, check=True).stdout)
