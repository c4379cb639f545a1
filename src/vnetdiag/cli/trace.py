"""vnetdiag trace record|report|export: record kernel events, analyse a recording or an LTTng trace, export CTF."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from vnetdiag.errors import BadInputError, UsageError


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    p = sub.add_parser("record", parents=[common], help="trace for a while and write the events to FILE")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="recording to write (gzip, vnetdiag.trace/1)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S", help="seconds to trace (default 10)")
    p.add_argument("--events", choices=("drops", "paths", "all"), default="paths",
                   help="drops: drops and the devices before them; paths: + xmit and TCP retransmits; "
                        "all: + GRO, FDB, TX timeouts (default paths)")
    p.add_argument("--netns", metavar="NS",
                   help="place device names among namespaces matching this glob (default: every namespace)")
    p.add_argument("--backend", choices=("auto", "ebpf", "tracefs"), default="auto",
                   help="drops: auto and ebpf also record the eBPF tracer's drops (exact namespace, device, "
                        "flows) in the file; tracefs records tracefs events only (default auto)")
    p.add_argument("--filter", metavar="EXPR",
                   help="eBPF drops: per-packet records only for packets matching these pcap-filter words "
                        "(counts cover every drop)")
    p = sub.add_parser("export", parents=[common], help="write a recording as a CTF trace (LTTng event names)")
    p.add_argument("file", metavar="FILE", help="a recording written by 'trace record'")
    p.add_argument("--ctf", required=True, metavar="DIR", help="directory to write the CTF trace to (new or empty)")
    p = sub.add_parser("report", parents=[common],
                       help="run the analyses on a recording or an LTTng (CTF) kernel trace directory")
    p.add_argument("file", metavar="FILE|DIR",
                   help="a recording written by 'trace record', or a CTF trace directory (LTTng kernel trace)")


def run(args, out) -> int:
    from vnetdiag.cli import tracing_view as view

    if args.trace_command == "record":
        return _record(args, out, view)
    if args.trace_command == "export":
        return _export(args, out)
    if Path(args.file).is_dir():
        return _report_ctf(args, out, view)
    from vnetdiag.collect import tracefile
    from vnetdiag.collect.tracewindow import analyze_recording

    from vnetdiag.cli import drops_ebpf_view

    rec = tracefile.read(Path(args.file))
    result = analyze_recording(rec)
    meta = {"file": args.file, "schema": rec.meta.get("schema"), "kernel": rec.meta.get("kernel"),
            "events": rec.meta.get("events"), "pages": len(rec.pages)}
    if out.json_mode:
        doc = view.report_document(result, meta)
        doc["ebpf_drops"] = drops_ebpf_view.document(rec.drops, rec.drops.tallies) if rec.drops else None
        out.document(doc)
    else:
        out.console.print(f"recording {args.file}: kernel {meta['kernel']}, events {meta['events']}, "
                          f"{meta['pages']} pages")
        for table in view.report_tables(result):
            out.console.print(table)
        if rec.drops is not None:
            out.console.print("drops traced with eBPF in the same window (exact namespace, device, flows):")
            for table in drops_ebpf_view.tables(rec.drops, rec.drops.tallies):
                out.console.print(table)
    return 0


def _report_ctf(args, out, view) -> int:
    """An LTTng (CTF) trace directory: the same analyses, plus what LTTng's events lack."""
    from vnetdiag.collect import ctf

    trace = ctf.CtfTrace(Path(args.file))
    result = ctf.analyze_ctf(trace)
    meta = {"file": args.file, "format": "ctf", "tracer": trace.tracer(),
            "kernel": trace.env.get("kernel_release"), "hostname": trace.env.get("hostname"),
            "clock_offset_ns": trace.clock_offset_ns,
            "events": {f"{name}@{dev}" if dev else name: n for (name, dev), n in sorted(trace.counts.items())},
            "notes": trace.notes()}
    if out.json_mode:
        out.document(view.report_document(result, meta))
    else:
        out.console.print(f"CTF trace {trace.path}: {meta['tracer']}, kernel {meta['kernel']}, "
                          f"{trace.events_read} network events")
        for table in view.report_tables(result):
            out.console.print(table)
        for note in meta["notes"]:
            out.console.print(f"note: {note}")
    return 0


def _export(args, out) -> int:
    from vnetdiag.collect import tracefile
    from vnetdiag.report import ctf_writer

    rec = tracefile.read(Path(args.file))
    summary = ctf_writer.export_recording(rec, Path(args.ctf))
    doc = {"schema": "vnetdiag.trace-export/1", "file": args.file, "ctf": str(summary.path),
           "events": summary.events, "devices": summary.devices, "streams": summary.streams}
    if out.json_mode:
        out.document(doc)
    else:
        out.console.print(f"wrote CTF trace {summary.path}: {sum(summary.events.values())} events in "
                          f"{summary.streams} streams, {summary.devices} devices")
    return 0


def _record(args, out, view) -> int:
    from vnetdiag.collect.tracewindow import TraceWindow

    if args.duration <= 0:
        raise UsageError("--duration must be a positive number of seconds", hint="e.g. --duration 10")
    target = Path(args.output)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise BadInputError(f"cannot write {target}: {parent} is not a writable directory",
                            hint="choose an existing, writable directory for -o")
    window = TraceWindow(events=args.events, namespaces=[args.netns] if args.netns else None, record_to=target)
    drops = None
    if args.backend != "tracefs":
        from vnetdiag.collect.droptrace import DropTrace

        drops = DropTrace(backend=args.backend, filter=args.filter)
    try:
        if drops is not None:
            drops.start()
        window.start()
        out.info(f"recording {args.events} events to {target} for {args.duration:g} s ...")
        time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        if drops is not None and drops.backend is not None:
            got = drops.stop()
            window.drops = got if got.backend == "ebpf" else None
        result = window.stop()
    doc = {"schema": "vnetdiag.trace-record/1", "file": str(target), "bytes": target.stat().st_size,
           "duration_s": round(result.duration_s, 3), "events_read": result.completeness.events_read,
           "events_lost": result.completeness.events_lost, "complete": result.completeness.complete,
           "drop_backend": "ebpf" if window.drops is not None else "tracefs",
           "note": drops.note if drops is not None else ""}
    if out.json_mode:
        out.document(doc)
    else:
        out.console.print(f"wrote {target} ({doc['bytes']} bytes): "
                          + view.completeness_line(result.completeness, result.duration_s))
    return 0
