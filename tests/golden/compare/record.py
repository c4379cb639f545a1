"""Record a real compare run on the lab for the statistics' unit tests.

    VNETDIAG_LAB_PREFIX=hc vnetdiag lab up
    VNETDIAG_LAB_PREFIX=hc .venv/bin/python tests/golden/compare/record.py

Three paths: veth (vm1 -> vm3), its clean twin (the same path again), and the
macvtap guest (vm2 -> vm3) with 5 % loss injected at hv1:mvl0-p, the bridge
port of the macvtap's lower device (only that path crosses it). Writes
lab_loss.npz (see recording.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import save  # noqa: E402

from vnetdiag import lab as lab_mod  # noqa: E402
from vnetdiag.compare import compare, parse_path  # noqa: E402


def main() -> None:
    lab = lab_mod.attach()
    lab.clear_faults()
    lab.add_fault("loss", at="hv1:mvl0-p", percent=5)
    try:
        result = compare([parse_path(p) for p in ("veth=vm1->vm3", "twin=vm1->vm3", "macvtap-loss=vm2->vm3")],
                         duration_s=0.9, slice_s=0.15, streams=2, progress=print)
    finally:
        lab.clear_faults()
    print(save(result, "lab_loss"))


if __name__ == "__main__":
    main()
