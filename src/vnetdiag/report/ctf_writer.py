"""vnetdiag recordings out as CTF 1.8 traces with LTTng's event and field names.

The trace is written by babeltrace2's own CTF writer (the ``sink.ctf.fs``
component, through the ``bt2`` bindings): this module only describes the
events (a Python source component) and lets babeltrace2 lay out the metadata
and the binary streams, so the result is what babeltrace2 and the tools built
on CTF (Trace Compass) read.

Layout, after lttng-modules' kernel traces: one stream per CPU
(``channel0_<cpu>``) with the CPU in the packet context (``cpu_id``), a 1 GHz
``monotonic`` clock (the recording's CLOCK_MONOTONIC nanoseconds), events
named as lttng-modules names them (``net_if_receive_skb``, ``net_dev_queue``,
``net_dev_xmit``, ``skb_kfree``, ``skb_consume``, ...) with the kernel's field
names. Drop reasons are an enumeration whose labels are the recording's own
``skb:kfree_skb`` reason table. What LTTng has no event for is written under
vnetdiag's name: ``vnetdiag_netdev`` (the device map, between
``lttng_statedump_start`` and ``lttng_statedump_end``, so a reader can place
devices in namespaces), and ``location_symbol`` beside each integer
``location``. Events the kernel could not store are written as discarded
events at the end of each CPU's stream (the recording knows their number, not
their time).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vnetdiag.collect import tracedecode as td
from vnetdiag.collect.ctf import DEVICE_EVENT, bt2_module
from vnetdiag.collect.tracefile import Recording
from vnetdiag.errors import BadInputError, VnetdiagError
from vnetdiag.model import events as ev

_PACKET_EVENTS = 4096
"""Events per packet: LTTng's sub-buffers hold a few thousand events; readers seek by packet."""

_NAME = {ev.ReceiveEvent: "net_if_receive_skb", ev.QueueEvent: "net_dev_queue", ev.XmitEvent: "net_dev_xmit",
         ev.GroEvent: "net_napi_gro_receive_entry", ev.ConsumeEvent: "skb_consume", ev.DropEvent: "skb_kfree",
         ev.DeliverEvent: "skb_copy_datagram_iovec", ev.XmitTimeoutEvent: "net_dev_xmit_timeout",
         ev.NapiPollEvent: "napi_poll"}
_FDB_NAME = {"add": "br_fdb_add", "update": "br_fdb_update", "delete": "fdb_delete"}


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportSummary:
    path: Path
    events: dict[str, int]
    """Events written per CTF event name (the statedump and device events included)."""
    devices: int
    streams: int


def event_name(e: ev.TraceEvent) -> str:
    """The LTTng event name a record is written under."""
    if isinstance(e, ev.FdbEvent):
        return _FDB_NAME[e.kind]
    if isinstance(e, ev.RetransmitEvent):
        return "tcp_retransmit_synack" if e.synack else "tcp_retransmit_skb"
    return _NAME[type(e)]


def _events(rec: Recording) -> list[ev.TraceEvent]:
    # Locations are decoded as hex so the raw address survives; the recording's
    # symbols give the name written beside it.
    dec = td.RecordDecoder(rec.formats, rec.layout, lambda addr: f"{addr:#x}")
    out = [e for cpu, page in rec.pages for e in dec.decode_page(cpu, page)]
    out.sort(key=lambda e: (e.ts_ns, e.cpu))
    return out


def _reasons(rec: Recording) -> dict[int, str]:
    drop = next((f for f in rec.formats if (f.system, f.name) == td.DROP), None)
    return drop.symbols("reason") if drop else {}


class _Classes:
    """The trace, clock, stream and event classes: LTTng's names and field types."""

    def __init__(self, comp, bt2, reasons: dict[int, str]) -> None:
        tc = comp._create_trace_class(assigns_automatic_stream_class_id=True)
        self.tc = tc
        self.clock = comp._create_clock_class(frequency=1_000_000_000, name="monotonic",
                                              description="CLOCK_MONOTONIC (vnetdiag recording)",
                                              origin_is_unix_epoch=False)
        # A field class belongs to one place in the trace: each use gets its own.
        def u8():
            return tc.create_unsigned_integer_field_class(8)

        def u16():
            return tc.create_unsigned_integer_field_class(16)

        def u32():
            return tc.create_unsigned_integer_field_class(32)

        def s32():
            return tc.create_signed_integer_field_class(32)

        def hex64():
            return tc.create_unsigned_integer_field_class(64, preferred_display_base=bt2.IntegerDisplayBase.HEXADECIMAL)

        def reason():
            fc = tc.create_unsigned_enumeration_field_class(16)
            for value, label in sorted(reasons.items()):
                fc.add_mapping(label, bt2.UnsignedIntegerRangeSet([(value, value)]))
            return fc

        def mac():
            return tc.create_static_array_field_class(tc.create_unsigned_integer_field_class(
                8, preferred_display_base=bt2.IntegerDisplayBase.HEXADECIMAL), 6)

        string = tc.create_string_field_class
        packet_ctx = tc.create_structure_field_class()
        packet_ctx.append_member("cpu_id", u32())
        self.sc = tc.create_stream_class(
            default_clock_class=self.clock, packet_context_field_class=packet_ctx, assigns_automatic_stream_id=False,
            supports_packets=True, packets_have_beginning_default_clock_snapshot=True,
            packets_have_end_default_clock_snapshot=True, supports_discarded_events=True,
            discarded_events_have_default_clock_snapshots=True)
        layouts = {
            "net_if_receive_skb": [("skbaddr", hex64()), ("len", u32()), ("name", string())],
            "net_dev_queue": [("skbaddr", hex64()), ("len", u32()), ("name", string())],
            "net_dev_xmit": [("skbaddr", hex64()), ("rc", s32()), ("len", u32()), ("name", string())],
            "net_napi_gro_receive_entry": [("skbaddr", hex64()), ("len", u32()), ("name", string())],
            "skb_kfree": [("skbaddr", hex64()), ("location", hex64()), ("protocol", u16()), ("reason", reason()),
                          ("location_symbol", string())],
            "skb_consume": [("skbaddr", hex64()), ("location", hex64()), ("location_symbol", string())],
            "skb_copy_datagram_iovec": [("skbaddr", hex64()), ("len", s32())],
            "napi_poll": [("napi", hex64()), ("dev_name", string()), ("work", s32()), ("budget", s32())],
            "net_dev_xmit_timeout": [("name", string()), ("driver", string()), ("queue_index", s32())],
            "br_fdb_add": [("dev", string()), ("addr", mac()), ("vid", u16())],
            "br_fdb_update": [("br_dev", string()), ("dev", string()), ("addr", mac()), ("vid", u16())],
            "fdb_delete": [("br_dev", string()), ("dev", string()), ("addr", mac()), ("vid", u16())],
            "tcp_retransmit_skb": [("saddr", string()), ("sport", u16()), ("daddr", string()), ("dport", u16()),
                                   ("state", s32())],
            "tcp_retransmit_synack": [("saddr", string()), ("sport", u16()), ("daddr", string()), ("dport", u16())],
            "lttng_statedump_start": [],
            "lttng_statedump_end": [],
            DEVICE_EVENT: [("netns", string()), ("name", string()), ("ifindex", s32()), ("kind", string()),
                           ("master", string()), ("has_peer", u8()), ("peer_netns", string()),
                           ("peer_name", string())],
        }
        self.events = {}
        for name, members in layouts.items():
            payload = tc.create_structure_field_class()
            for member, fc in members:
                payload.append_member(member, fc)
            self.events[name] = self.sc.create_event_class(name=name, payload_field_class=payload)


def _payload(e: ev.TraceEvent, symbolize, reason_value) -> dict:
    t = type(e)
    if t in (ev.ReceiveEvent, ev.QueueEvent, ev.GroEvent):
        return {"skbaddr": e.skbaddr, "len": e.len_bytes, "name": e.device}
    if t is ev.XmitEvent:
        return {"skbaddr": e.skbaddr, "rc": e.rc, "len": e.len_bytes, "name": e.device}
    if t is ev.DropEvent:
        loc = int(e.location, 16)
        return {"skbaddr": e.skbaddr, "location": loc, "protocol": e.protocol, "reason": reason_value(e.reason),
                "location_symbol": symbolize(loc)}
    if t is ev.ConsumeEvent:
        loc = int(e.location, 16)
        return {"skbaddr": e.skbaddr, "location": loc, "location_symbol": symbolize(loc)}
    if t is ev.DeliverEvent:
        return {"skbaddr": e.skbaddr, "len": e.len_bytes}
    if t is ev.NapiPollEvent:
        return {"napi": e.napi, "dev_name": e.device, "work": -1 if e.work is None else e.work,
                "budget": -1 if e.budget is None else e.budget}
    if t is ev.XmitTimeoutEvent:
        return {"name": e.device, "driver": e.driver, "queue_index": e.queue}
    if t is ev.FdbEvent:
        addr = [int(b, 16) for b in e.mac.split(":")]
        p = {"dev": e.device, "addr": addr, "vid": e.vid}
        if e.kind != "add":
            p["br_dev"] = e.bridge
        return p
    if t is ev.RetransmitEvent:
        p = {"saddr": e.saddr, "sport": e.sport, "daddr": e.daddr, "dport": e.dport}
        if not e.synack:
            p["state"] = e.state
        return p
    raise TypeError(t)


def _set(payload_field, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, list):
            f = payload_field[k]
            for i, x in enumerate(v):
                f[i] = x
        else:
            payload_field[k] = v


class _Plan:
    """Everything one export writes, turned into bt2 messages by the source's iterator."""

    def __init__(self, rec: Recording, events: list[ev.TraceEvent], bt2) -> None:
        self.rec = rec
        self.events = events
        self.bt2 = bt2
        self.reasons = _reasons(rec)
        self._by_name = {v: k for k, v in self.reasons.items()}
        self.classes: _Classes | None = None
        self.counts: Counter[str] = Counter()
        self.cpus = sorted({e.cpu for e in events} | {0} | set(rec.completeness.lost_by_cpu))
        self.error: Exception | None = None

    def reason_value(self, name: str) -> int:
        if name in self._by_name:
            return self._by_name[name]
        if name.startswith("reason#"):
            return int(name[7:])
        raise BadInputError(f"drop reason {name!r} is not in the recording's reason table",
                            hint="the recording is inconsistent; record it again")

    def environment(self) -> dict:
        return {"domain": "kernel", "sysname": "Linux", "tracer_name": "vnetdiag",
                "kernel_release": str(self.rec.meta.get("kernel") or ""),
                "vnetdiag_schema": str(self.rec.meta.get("schema")),
                "vnetdiag_events_lost": int(self.rec.completeness.events_lost),
                "vnetdiag_duration_s": repr(self.rec.duration_s),  # text: a CTF environment has no floats
                "vnetdiag_missing_events": ",".join(self.rec.completeness.missing_events)}

    def messages(self, it):
        c = self.classes
        trace = c.tc(name="vnetdiag", environment=self.environment())
        streams = {cpu: trace.create_stream(c.sc, id=cpu, name=f"channel0_{cpu}") for cpu in self.cpus}
        t0 = self.events[0].ts_ns if self.events else int(self.rec.meta.get("started_ns", 0))
        open_packet: dict[int, tuple[object, int]] = {}  # cpu -> (packet, events in it)
        last_ts = {cpu: t0 for cpu in self.cpus}
        for cpu in self.cpus:
            yield it._create_stream_beginning_message(streams[cpu])

        def packet_for(cpu: int, ts: int):
            cur = open_packet.get(cpu)
            if cur is not None and cur[1] < _PACKET_EVENTS:
                open_packet[cpu] = (cur[0], cur[1] + 1)
                return cur[0], []
            out = []
            if cur is not None:
                out.append(it._create_packet_end_message(cur[0], last_ts[cpu]))
            packet = streams[cpu].create_packet()
            packet.context_field["cpu_id"] = cpu
            out.append(it._create_packet_beginning_message(packet, ts))
            open_packet[cpu] = (packet, 1)
            return packet, out

        def event(cpu: int, ts: int, name: str, values: dict):
            packet, before = packet_for(cpu, ts)
            yield from before
            msg = it._create_event_message(c.events[name], packet, ts)
            _set(msg.event.payload_field, values)
            last_ts[cpu] = ts
            self.counts[name] += 1
            yield msg

        # The device map first, as LTTng's statedump opens a kernel trace.
        yield from event(0, t0, "lttng_statedump_start", {})
        for refs in self.rec.devmap.values():
            for r in refs:
                yield from event(0, t0, DEVICE_EVENT, {
                    "netns": r.netns, "name": r.name, "ifindex": r.ifindex, "kind": r.kind, "master": r.master,
                    "has_peer": int(r.peer_name is not None), "peer_netns": r.peer_netns or "",
                    "peer_name": r.peer_name or ""})
        yield from event(0, t0, "lttng_statedump_end", {})
        symbolize = self.rec.symbolize
        for e in self.events:
            yield from event(e.cpu, e.ts_ns, event_name(e), _payload(e, symbolize, self.reason_value))
        end_ts = max(last_ts.values())
        for cpu in self.cpus:
            cur = open_packet.get(cpu)
            if cur is not None:
                yield it._create_packet_end_message(cur[0], end_ts)
            lost = self.rec.completeness.lost_by_cpu.get(cpu, 0)
            if lost:
                # CTF 1.8 keeps discarded events as a packet counter: the count goes
                # between the last packet and an empty one closing the stream.
                prev = end_ts if cur is not None else t0
                yield it._create_discarded_events_message(streams[cpu], lost, prev, end_ts)
                packet = streams[cpu].create_packet()
                packet.context_field["cpu_id"] = cpu
                yield it._create_packet_beginning_message(packet, end_ts)
                yield it._create_packet_end_message(packet, end_ts)
            yield it._create_stream_end_message(streams[cpu])


def _source_class(bt2):
    class _Iterator(bt2._UserMessageIterator):
        def __init__(self, config, output_port):
            self._gen = output_port.user_data.messages(self)
            self._plan = output_port.user_data

        def __next__(self):
            try:
                return next(self._gen)
            except StopIteration:
                raise
            except Exception as exc:  # keep ours: bt2 would wrap it in its own error chain
                self._plan.error = exc
                raise

    class VnetdiagRecordingSource(bt2._UserSourceComponent, message_iterator_class=_Iterator):
        def __init__(self, config, params, plan):
            plan.classes = _Classes(self, bt2, plan.reasons)
            self._add_output_port("out", plan)

    return VnetdiagRecordingSource


def _target(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise BadInputError(f"cannot write a CTF trace to {out_dir}: it exists and is not an empty directory",
                                hint="give a new directory for --ctf")
        out_dir.rmdir()  # the sink writes into a path of its own making
    parent = out_dir.parent
    if not parent.is_dir():
        raise BadInputError(f"cannot write a CTF trace to {out_dir}: {parent} is not a directory",
                            hint="create the parent directory first")


def export_recording(rec: Recording, out_dir: Path) -> ExportSummary:
    """Write ``rec`` as a CTF trace in ``out_dir`` (new, or an empty directory)."""
    bt2 = bt2_module()
    out_dir = Path(out_dir)
    _target(out_dir)
    events = _events(rec)
    plan = _Plan(rec, events, bt2)
    try:
        graph = bt2.Graph()
        src = graph.add_component(_source_class(bt2), "vnetdiag", obj=plan)
        sink_cls = bt2.find_plugin("ctf").sink_component_classes["fs"]
        sink = graph.add_component(sink_cls, "writer", params={"path": str(out_dir), "assume-single-trace": True,
                                                             "quiet": True})
        graph.connect_ports(src.output_ports["out"], sink.input_ports["in"])
        graph.run()
    except (bt2._Error, OSError, ValueError, TypeError, OverflowError) as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(plan.error, VnetdiagError):
            raise plan.error from None
        causes = [getattr(c, "message", "") for c in exc] if isinstance(exc, bt2._Error) else [str(exc)]
        first = next((ln.strip() for c in causes for ln in c.splitlines() if ln.strip()), type(exc).__name__)
        raise BadInputError(f"cannot write a CTF trace to {out_dir}: {first[:200]}",
                            hint="check that the directory is writable") from None
    return ExportSummary(path=out_dir, events=dict(plan.counts), devices=sum(len(r) for r in rec.devmap.values()),
                         streams=len(plan.cpus))
