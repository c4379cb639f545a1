"""Library entry points for capture analysis: read a file, or capture and read.

``analyze_file`` ties the reader (collect/pcap.py), the decoder and the flow
analysis together; ``capture_and_analyze`` first takes a bounded tcpdump
capture on given devices in given namespaces (what ``diagnose --capture`` uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from vnetdiag.analyze.flows import FlowAccumulator
from vnetdiag.collect.pcap import PcapReader
from vnetdiag.collect.pcap_decode import SUPPORTED_LINKTYPES, decode
from vnetdiag.model.pcap import CaptureInfo, PcapReport


Phase = Callable[[str, int], None]
"""``phase(name, count)``: what a long analysis is doing, with the count it works
on: "read" (packets read so far, after every batch), "streams" and "tcp" (TCP
packets being grouped into streams, then analysed), "records" (TCP streams
being turned into flow records), "done" (packets in the file)."""


def analyze_file(path: str | Path | bytes, *, progress: Callable[[int, int], None] | None = None,
                 phase: Phase | None = None, chunk_bytes: int = 8 << 20) -> PcapReport:
    """Read a pcap/pcapng(.gz) file and analyse it. Raises BadInputError for a
    file that is not a capture; damage inside a capture becomes warnings.
    ``progress(done_bytes, total_bytes)`` follows the reading; ``phase`` every step."""
    reader = PcapReader(path if isinstance(path, (bytes, bytearray)) else Path(path), chunk_bytes=chunk_bytes, progress=progress)
    acc = FlowAccumulator()
    for batch in reader:
        acc.add(decode(batch))
        if phase is not None:
            phase("read", reader.packets)
    warnings = list(reader.warnings)
    for lt, count in sorted(acc.unknown_linktypes.items()):
        warnings.append(f"{count} packet(s) with unsupported link type {lt} counted but not analysed "
                        f"(supported: {', '.join(map(str, SUPPORTED_LINKTYPES))})")
    first = acc.first_ns
    info = CaptureInfo(
        path=reader.name, format=reader.format, compressed=reader.compressed, packets=reader.packets,
        bytes_on_wire=acc.bytes_on_wire, link_types=tuple(i.linktype for i in reader.interfaces),
        timestamp_resolution_ns=reader.resolutions_ns(),
        first_epoch_s=first / 1e9 if first is not None else None,
        duration_s=((acc.last_ns or 0) - (first or 0)) / 1e9, skipped=reader.skipped,
        undecoded=acc.undecoded, warnings=tuple(warnings))
    report = acc.finish(info, phase=phase)
    if phase is not None:
        phase("done", reader.packets)
    return report


def capture_and_analyze(targets: Sequence[tuple[str, str]], *, duration_s: float = 5.0,
                        max_packets: int = 200_000, snaplen: int = 128,
                        directory: Path | None = None, while_running: Callable[[], None] | None = None
                        ) -> dict[str, PcapReport]:
    """Capture on each (netns, device) for ``duration_s`` (or until ``max_packets``),
    then analyse each capture. Returns {"netns:device": report}. See collect/capture.py."""
    from vnetdiag.collect.capture import capture, release

    files = capture(targets, duration_s=duration_s, max_packets=max_packets, snaplen=snaplen,
                    directory=directory, while_running=while_running)
    try:
        return {label: analyze_file(path) for label, path in files.items()}
    finally:
        if directory is None:
            release(files)
