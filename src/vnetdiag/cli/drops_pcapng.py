"""`vnetdiag drops --pcapng FILE`: the eBPF backend's records with their first bytes, as pcapng."""

from __future__ import annotations

from pathlib import Path

from vnetdiag.errors import UsageError
from vnetdiag.model.drops import DropTally, DropTraceResult

HEAD_BYTES = 128


def options(args) -> tuple[str, dict]:
    """The backend and EbpfDropSource options --pcapng needs: bytes need the eBPF
    backend (auto must not fall back), and every drop is a record unless --filter picks."""
    if args.light or args.backend == "tracefs":
        raise UsageError("--pcapng needs the packets' bytes, which only the eBPF backend reads",
                         hint="use --backend ebpf (or auto) without --light")
    opts: dict = {"head_bytes": HEAD_BYTES}
    if not args.filter:
        opts["sample"] = 100_000  # as many as the record cap: the file should hold every drop
    return "ebpf", opts


def write(args, result: DropTraceResult, tallies: tuple[DropTally, ...], wall_offset_ns: int, out) -> dict:
    from vnetdiag.cli.drops_ebpf_view import selected_packets
    from vnetdiag.report.pcapng_writer import pcapng_bytes

    packets = [p for p in selected_packets(result, tallies) if p.matched or not args.filter]
    labels = {t.netns_inode: t.netns for t in result.tallies}
    data = pcapng_bytes(packets, wall_offset_ns=wall_offset_ns, netns_labels=labels, snaplen=HEAD_BYTES)
    try:
        Path(args.pcapng).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {args.pcapng}: {exc.strerror}", hint="a writable path") from exc
    missed = sum(t.count for t in tallies) - len(packets)
    out.info(f"wrote {len(packets)} dropped packets to {args.pcapng}" +
             (f" ({missed} drops counted without a record: see loss)" if missed > 0 and not args.filter else ""))
    return {"path": str(args.pcapng), "packets": len(packets), "snaplen_bytes": HEAD_BYTES}
