"""Regenerate the golden tracing inputs from the running kernel (root).

    VNETDIAG_LAB_PREFIX=trc .venv/bin/python tests/golden/tracing/record.py

Writes: formats/<system>:<event> and header_page (format files), pages.bin
(raw trace_pipe_raw pages: u16 cpu, u32 length, page), trace.txt (the kernel's
own text rendering of the same events, with hash-ptr off), kallsyms.txt (the
/proc/kallsyms lines of the functions the events name), recording.vtr (a
`vnetdiag trace record` file of a ping across the lab overlay).
Needs a lab up (for traffic across the overlay).
"""

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from vnetdiag.collect import tracedecode as td
from vnetdiag.collect.tracing import Tracer
from vnetdiag.system import tracefs

HERE = Path(__file__).parent
prefix = os.environ.get("VNETDIAG_LAB_PREFIX", "vnd")


def ping():
    subprocess.run(["ip", "netns", "exec", f"{prefix}-vm1", "ping", "-c2", "-i0.2", "198.51.100.3"], check=True,
                   capture_output=True)
    subprocess.run(["ip", "netns", "exec", f"{prefix}-vm1", "python3", "-c",
                    "import socket; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'x'*64,('198.51.100.3',9))"],
                   check=True)


(HERE / "formats").mkdir(exist_ok=True)
root = tracefs.TRACEFS_ROOT
for system, event in td.KNOWN_EVENTS:
    (HERE / "formats" / f"{system}:{event}").write_text((root / "events" / system / event / "format").read_text())
(HERE / "header_page").write_text((root / "events" / "header_page").read_text())

events = (td.DROP, td.CONSUME, td.RECEIVE, td.QUEUE, td.XMIT)
with Tracer(events, buffer_kb=512) as tr:
    tr.instance.set("options/hash-ptr", "0")
    time.sleep(0.2)
    ping()
    time.sleep(0.3)
    tr.stop_tracing()
    (HERE / "trace.txt").write_text(tr.instance.get("trace"))
    with open(HERE / "pages.bin", "wb") as f:
        for cpu, page in tr.read_pages():
            f.write(struct.pack("<HI", cpu, len(page)) + page)
names = set()
for line in (HERE / "trace.txt").read_text().splitlines():
    if "location=" in line:
        names.add(line.split("location=")[1].split("+")[0].split()[0])
with open("/proc/kallsyms") as src, open(HERE / "kallsyms.txt", "w") as dst:
    lines = src.read().splitlines()
    for i, line in enumerate(lines):
        parts = line.split()
        if parts[1] in "tT" and parts[2] in names:
            dst.write(line + "\n")
            if i + 1 < len(lines):
                dst.write(lines[i + 1] + "\n")  # the next symbol bounds the function's size

rec = subprocess.Popen([str(Path(sys.executable).with_name("vnetdiag")), "trace", "record", "-o",
                        str(HERE / "recording.vtr"), "--duration", "2", "--events", "all", "--netns", f"{prefix}-*"])
time.sleep(0.8)
ping()
rec.wait()
