"""What a lab could leave behind on the machine, to compare before and after
(test_lab_cleanup, test_demo)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")


def _lab_device_names(prefix: str) -> set[str]:
    from vnetdiag.lab import spec

    s = spec.default(prefix)
    names = {br for n in s.nodes for br in n.bridges}
    names |= {e.name for v in s.veths for e in (v.a, v.b)} | {x.name for x in s.vxlans}
    names |= {m.name for m in s.macvtaps} | {m.guest.name for m in s.macvtaps}
    return names


def machine_state(prefix: str, state_dir: Path | None = None) -> dict:
    """What a lab could leave behind: namespaces, host links, backends, sysctl, files.
    Only this lab's: other test runs on this machine make labs of their own.
    (Callers hold global_settings, so nf_conntrack_max is theirs to compare.)"""
    netns = sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix + "-")) if os.path.isdir("/run/netns") else []
    host_links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split("\n")
    # A lab device left in the host namespace would carry one of the lab's device names.
    names = _lab_device_names(prefix)
    backends = subprocess.run(["pgrep", "-f", f"vnetdiag\\.lab\\.backend --lab {prefix}( |$)"], capture_output=True,
                              text=True).stdout.split()
    state = state_dir or Path(os.environ.get("VNETDIAG_STATE_DIR", "/run/vnetdiag"))
    mine = re.compile(rf"(^|[/-]){re.escape(prefix)}([/.-]|$)")
    files = sorted(str(p) for p in state.rglob("*") if mine.search(str(p.relative_to(state)))) if state.exists() else []
    return {"netns": netns, "host_links": sorted(l.split()[0].split("@")[0] for l in host_links
                                                 if l and l.split()[0].split("@")[0] in names),
            "backends": backends, "conntrack_max": CONNTRACK_MAX.read_text(), "files": files}
