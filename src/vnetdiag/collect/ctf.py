"""LTTng kernel traces (CTF) in: the same event records as vnetdiag's tracefs recordings.

The trace is read with babeltrace2's Python bindings (``bt2``, Debian's
python3-bt2), which decode CTF 1.8 from the trace's own metadata; nothing
about the binary layout is assumed here. LTTng names its network events and
fields after the kernel's tracepoints (lttng-modules
instrumentation/events/{net,skb,napi}.h), under its own event names, which
changed across versions (``netif_receive_skb`` became ``net_if_receive_skb``):
``_MAPPERS`` lists every name and builds the model record from the fields.

What LTTng's events lack is said in ``CtfTrace.notes``: no namespace on any
event (the statedump lists the initial namespace's interfaces only), no
symbol table (locations stay addresses), no drop reason before Linux 5.17.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from vnetdiag.errors import BadInputError, MissingFeatureError
from vnetdiag.model import events as ev
from vnetdiag.model.tracing import Completeness, DeviceRef, TraceAnalysis

NO_REASON = "UNRECORDED"
"""Reason given to a drop whose skb_kfree event carries no reason field (LTTng before Linux 5.17)."""

DEVICE_EVENT = "vnetdiag_netdev"
"""Event that vnetdiag's CTF export writes once per known device (report/ctf_writer.py):
the device map, which LTTng's statedump cannot give (it has no namespaces)."""

RECEIVE_NAMES = ("netif_receive_skb", "net_if_receive_skb")
FDB_NAMES = ("br_fdb_add", "br_fdb_update", "fdb_delete", "br_fdb_external_learn_add")
NETWORK_EVENTS = (*RECEIVE_NAMES, "net_dev_queue", "net_dev_xmit", "napi_poll", "skb_kfree", "skb_consume",
                  "skb_copy_datagram_iovec", "lttng_statedump_network_interface", *FDB_NAMES)
"""LTTng event names this reader maps (besides vnetdiag's own export events)."""

_BATCH = 20_000


def bt2_module():
    """The bt2 module, or a MissingFeatureError saying how to install it."""
    try:
        import bt2
    except ImportError:
        raise MissingFeatureError("cannot read CTF traces: babeltrace2's Python bindings (bt2) are not installed",
                                  hint="apt-get install python3-bt2 (the virtualenv must see system site "
                                       "packages: python3 -m venv --system-site-packages)") from None
    return bt2


def trace_dir(path: Path) -> Path | None:
    """The CTF trace directory at ``path`` (it holds a ``metadata`` file), also
    inside an LTTng session directory (``path/kernel/metadata``); None if neither."""
    path = Path(path)
    for d in (path, path / "kernel"):
        if (d / "metadata").is_file():
            return d
    return None


def _s(field) -> str:
    """A string field's text. babeltrace2 2.0's CTF reader leaves an empty string
    holding the previous event's text (only its length is reset: review.lttng.org
    change 4528), so the length decides."""
    if isinstance(field, str):
        return field
    return str(field) if len(field) else ""


def _mac(field) -> str:
    return ":".join(f"{int(b):02x}" for b in field)


def _hex(v: int) -> str:
    return f"{v:#x}"


def _get(p, name: str, default=None):
    return p.get(name, default)


# Builders: (ts_ns, cpu, payload) -> record. Field names are LTTng's (CTF 1.8
# readers strip the leading underscore lttng-modules writes in the metadata).
def _receive(ts, cpu, p):
    return ev.ReceiveEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), device=_s(p["name"]),
                           len_bytes=int(p["len"]))


def _queue(ts, cpu, p):
    return ev.QueueEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), device=_s(p["name"]),
                         len_bytes=int(p["len"]))


def _xmit(ts, cpu, p):
    return ev.XmitEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), device=_s(p["name"]),
                        len_bytes=int(p["len"]), rc=int(p["rc"]))


def _gro(ts, cpu, p):
    if "name" not in p:  # lttng-modules' own net_napi_gro_receive_entry has only skbaddr
        return None
    return ev.GroEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), device=_s(p["name"]), len_bytes=int(p["len"]))


def _location(p) -> str:
    sym = _get(p, "location_symbol")
    if sym is not None and _s(sym):
        return _s(sym)
    loc = _get(p, "location")
    return "" if loc is None else _hex(int(loc))


def _consume(ts, cpu, p):
    return ev.ConsumeEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), location=_location(p))


def _deliver(ts, cpu, p):
    return ev.DeliverEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), len_bytes=int(p["len"]))


def _drop(ts, cpu, p):
    r = _get(p, "reason")
    if r is None:
        reason = NO_REASON
    else:  # an enumeration: its labels come from the trace's metadata
        labels = getattr(r, "labels", None)
        reason = labels[0] if labels else f"reason#{int(r)}"
    return ev.DropEvent(ts_ns=ts, cpu=cpu, skbaddr=int(p["skbaddr"]), location=_location(p), reason=reason,
                        protocol=int(_get(p, "protocol", 0)))


def _napi(ts, cpu, p):
    work, budget = _get(p, "work"), _get(p, "budget")
    return ev.NapiPollEvent(ts_ns=ts, cpu=cpu, device=_s(p["dev_name"]), napi=int(p["napi"]),
                            work=None if work is None else int(work), budget=None if budget is None else int(budget))


def _fdb(kind):
    def build(ts, cpu, p):
        return ev.FdbEvent(ts_ns=ts, cpu=cpu, kind=kind, bridge=_s(_get(p, "br_dev", "")), device=_s(p["dev"]),
                           mac=_mac(p["addr"]), vid=int(_get(p, "vid", 0)))
    return build


def _retrans(synack):
    def build(ts, cpu, p):
        return ev.RetransmitEvent(ts_ns=ts, cpu=cpu, saddr=_s(p["saddr"]), sport=int(p["sport"]),
                                  daddr=_s(p["daddr"]), dport=int(p["dport"]), synack=synack,
                                  state=int(_get(p, "state", 0)))
    return build


def _timeout(ts, cpu, p):
    return ev.XmitTimeoutEvent(ts_ns=ts, cpu=cpu, device=_s(p["name"]), driver=_s(p["driver"]),
                               queue=int(p["queue_index"]))


_MAPPERS: dict[str, Callable] = {
    **{n: _receive for n in RECEIVE_NAMES},
    "net_dev_queue": _queue, "net_dev_xmit": _xmit, "net_napi_gro_receive_entry": _gro,
    "skb_consume": _consume, "skb_kfree": _drop, "skb_copy_datagram_iovec": _deliver, "napi_poll": _napi,
    "br_fdb_add": _fdb("add"), "br_fdb_external_learn_add": _fdb("add"), "br_fdb_update": _fdb("update"),
    "fdb_delete": _fdb("delete"),
    "tcp_retransmit_skb": _retrans(False), "tcp_retransmit_synack": _retrans(True),
    "net_dev_xmit_timeout": _timeout,
}


class CtfTrace:
    """An open CTF trace: ``batches()`` yields its network events as model records
    in time order, and fills in the device map, counts, completeness and notes."""

    def __init__(self, path: Path) -> None:
        self.bt2 = bt2_module()
        given = Path(path)
        d = trace_dir(given)
        if d is None:
            raise BadInputError(f"{given} is not a CTF trace directory (no metadata file)",
                                hint="give the directory that holds an LTTng trace's metadata and channel files")
        self.path = d
        self.env: dict[str, object] = {}
        self.event_classes: set[str] = set()
        self.devmap: dict[str, tuple[DeviceRef, ...]] = {}
        self.statedump_done = False
        """True once lttng_statedump_end was read: the device map is complete."""
        self.counts: Counter[tuple[str, str]] = Counter()
        """(LTTng event name, device name or '') -> events read."""
        self.lost_by_cpu: Counter[int] = Counter()
        self.lost_packets = 0
        """Packets LTTng lost whole (counted once each in lost_by_cpu: at least one event)."""
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.clock_offset_ns = 0
        """Nanoseconds from the Unix epoch to the trace clock's zero (LTTng: boot)."""
        self.events_read = 0
        self.skipped: Counter[str] = Counter()
        """Events of a mapped name that could not become a record (LTTng's GRO entry without a device)."""
        self._has_field: dict[tuple[str, str], bool] = {}
        self._exported_devices: dict[str, list[DeviceRef]] = {}
        self._it = self._open()
        self._pending = None
        self._pending = self._next_message()  # a corrupt trace fails here, before any analysis

    def _open(self):
        bt2 = self.bt2
        try:
            spec = bt2.ComponentSpec.from_named_plugin_and_component_class("ctf", "fs", {"inputs": [str(self.path)]})
            return bt2.TraceCollectionMessageIterator(spec)
        except (bt2._Error, ValueError) as exc:  # bt2's errors carry a chain of causes
            raise self._bad(exc) from None

    def _bad(self, exc: Exception) -> BadInputError:
        # bt2 errors are a sequence of causes, innermost (the actual failure) first.
        causes = [getattr(c, "message", "") for c in exc] if isinstance(exc, self.bt2._Error) else [str(exc)]
        first = next((ln.strip() for c in causes for ln in c.splitlines() if ln.strip()), type(exc).__name__)
        return BadInputError(f"{self.path} is not a readable CTF trace: {first[:200]}",
                             hint="the trace is corrupt or truncated; check it with `babeltrace2 DIR`")

    def _next_message(self):
        try:
            return next(self._it)
        except StopIteration:
            return None
        except self.bt2._Error as exc:
            raise self._bad(exc) from None

    def _messages(self) -> Iterator:
        while self._pending is not None:
            msg, self._pending = self._pending, None
            yield msg
            self._pending = self._next_message()

    def batches(self, size: int = _BATCH) -> Iterator[list[ev.TraceEvent]]:
        bt2 = self.bt2
        EventMsg, PacketBegin = bt2._EventMessageConst, bt2._PacketBeginningMessageConst
        StreamBegin, Discarded = bt2._StreamBeginningMessageConst, bt2._DiscardedEventsMessageConst
        LostPackets = bt2._DiscardedPacketsMessageConst
        stream_cpu: dict[int, int] = {}
        batch: list[ev.TraceEvent] = []
        for msg in self._messages():
            if type(msg) is EventMsg:
                ts = self._ns(msg.default_clock_snapshot)
                e = msg.event
                name = e.name
                mapper = _MAPPERS.get(name)
                if mapper is None:
                    if name == "lttng_statedump_network_interface":
                        self._statedump_interface(e.payload_field)
                    elif name == "lttng_statedump_end":
                        self.statedump_done = True
                    elif name == DEVICE_EVENT:
                        self._exported_device(e.payload_field)
                    continue
                cpu = stream_cpu.get(e.stream.addr)
                if cpu is None:
                    cpu = stream_cpu[e.stream.addr] = self._cpu(e)
                try:
                    rec = mapper(ts, cpu, e.payload_field)
                except (KeyError, TypeError, ValueError) as exc:
                    raise BadInputError(f"{self.path}: event {name} lacks the field {exc}",
                                        hint="this LTTng version names its fields differently; report it") from None
                if rec is None:
                    self.skipped[name] += 1
                    continue
                self.counts[(name, getattr(rec, "device", ""))] += 1
                self.events_read += 1
                batch.append(rec)
                if len(batch) >= size:
                    yield batch
                    batch = []
            elif type(msg) is PacketBegin:
                cpu = stream_cpu[msg.packet.stream.addr] = self._cpu(msg.packet)
                self.lost_by_cpu[cpu] += 0  # every traced CPU is listed, as in a recording
            elif type(msg) is Discarded:
                # LTTng counts events it could not store per channel buffer (any event, not only network ones).
                cpu = stream_cpu.get(msg.stream.addr, 0)
                self.lost_by_cpu[cpu] += msg.count if msg.count is not None else 1
            elif type(msg) is LostPackets:
                # A gap in the packet sequence numbers: whole sub-buffers were lost,
                # each held at least one event (their number is unknown).
                n = msg.count if msg.count is not None else 1
                self.lost_packets += n
                self.lost_by_cpu[stream_cpu.get(msg.stream.addr, 0)] += n
            elif type(msg) is StreamBegin:
                self._stream(msg.stream)
        if batch:
            yield batch
        self.statedump_done = True

    def _ns(self, snapshot) -> int:
        value = snapshot.value
        freq = snapshot.clock_class.frequency
        ns = value if freq == 1_000_000_000 else value * 1_000_000_000 // freq
        if self.first_ns is None or ns < self.first_ns:
            self.first_ns = ns
        if self.last_ns is None or ns > self.last_ns:
            self.last_ns = ns
        return ns

    @staticmethod
    def _cpu(obj) -> int:
        """LTTng puts the CPU in the packet context (``cpu_id``); a stream has one CPU."""
        packet = getattr(obj, "packet", obj)
        ctx = getattr(packet, "context_field", None) if packet is not None else None
        if ctx is not None and "cpu_id" in ctx:
            return int(ctx["cpu_id"])
        return 0

    def _stream(self, stream) -> None:
        if not self.env:
            self.env = {k: (int(v) if isinstance(v, numbers.Integral) else str(v))
                        for k, v in stream.trace.environment.items()}
            cc = stream.cls.default_clock_class
            if cc is not None:
                off = cc.offset
                self.clock_offset_ns = off.seconds * 1_000_000_000 + off.cycles * 1_000_000_000 // cc.frequency
        for ec in stream.cls.values():
            self.event_classes.add(ec.name)
            if ec.name == "skb_kfree" and ec.payload_field_class is not None:
                self._has_field[("skb_kfree", "reason")] = "reason" in ec.payload_field_class

    def _statedump_interface(self, p) -> None:
        # lttng-modules enumerates for_each_netdev(&init_net, ...): these devices
        # are in the initial namespace ('' in the device map). The statedump
        # has no ifindex, kind or master (0 and '').
        name = _s(p["name"])
        if name not in self.devmap:
            self.devmap[name] = (DeviceRef(netns="", name=name, ifindex=0, kind="", master="",
                                           peer_netns=None, peer_name=None),)
        self.counts[("lttng_statedump_network_interface", name)] += 1

    def _exported_device(self, p) -> None:
        peer_ns, peer = _s(p["peer_netns"]), _s(p["peer_name"])
        has_peer = bool(int(p["has_peer"]))
        ref = DeviceRef(netns=_s(p["netns"]), name=_s(p["name"]), ifindex=int(p["ifindex"]), kind=_s(p["kind"]),
                        master=_s(p["master"]), peer_netns=peer_ns if has_peer else None,
                        peer_name=peer if has_peer else None)
        refs = self._exported_devices.setdefault(ref.name, [])
        refs.append(ref)
        self.devmap[ref.name] = tuple(refs)

    # What the trace said, once read.
    @property
    def duration_s(self) -> float:
        """From the first to the last event of any kind (packets may open long before the first event)."""
        if "vnetdiag_duration_s" in self.env:  # vnetdiag's export: the recording's own window
            return float(str(self.env["vnetdiag_duration_s"]))
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9

    def completeness(self) -> Completeness:
        lost = dict(self.lost_by_cpu)
        if self.exported:
            listed = str(self.env.get("vnetdiag_missing_events", ""))
            return Completeness(events_read=self.events_read, events_lost=sum(lost.values()), lost_by_cpu=lost,
                                missing_events=tuple(n for n in listed.split(",") if n))
        missing = tuple(n for n in ("net_if_receive_skb", "net_dev_queue", "net_dev_xmit", "napi_poll", "skb_kfree",
                                    "skb_consume", "skb_copy_datagram_iovec", "lttng_statedump_network_interface",
                                    *FDB_NAMES)
                        if not self._defined(n))
        return Completeness(events_read=self.events_read, events_lost=sum(lost.values()), lost_by_cpu=lost,
                            missing_events=missing)

    @property
    def exported(self) -> bool:
        """Written by vnetdiag's CTF export (report/ctf_writer.py), not by LTTng."""
        return self.env.get("tracer_name") == "vnetdiag"

    def _defined(self, name: str) -> bool:
        if name in RECEIVE_NAMES:
            return any(n in self.event_classes for n in RECEIVE_NAMES)
        return name in self.event_classes

    def tracer(self) -> str:
        e = self.env
        if "tracer_name" not in e:
            return "unknown tracer"
        if "tracer_major" not in e:
            return str(e["tracer_name"])
        return f"{e['tracer_name']} {e.get('tracer_major', '?')}.{e.get('tracer_minor', '?')}" + (
            f".{e['tracer_patchlevel']}" if "tracer_patchlevel" in e else "")

    def notes(self) -> list[str]:
        """What the analyses could not know from this trace, and why."""
        out = []
        if self._exported_devices:
            out.append("device map from the vnetdiag_netdev events of vnetdiag's own CTF export")
        else:
            out.append("LTTng events carry no network namespace: devices named by lttng_statedump_network_interface "
                       "are placed in the initial namespace (the statedump lists only that one's devices, without "
                       "ifindex or kind); other device names stay unplaced ('?')")
        if not self.statedump_done or not self.devmap:
            out.append("no lttng_statedump_network_interface events: no device is placed in a namespace")
        if "skb_kfree" in self.event_classes and not self._has_field.get(("skb_kfree", "reason"), False):
            out.append(f"skb_kfree has no drop reason in this trace (LTTng adds it from Linux 5.17): "
                       f"drops show reason {NO_REASON}; LTTng's skb_kfree may also count packets the kernel freed "
                       f"with kfree_skb() without dropping them")
        if not self._exported_devices:
            out.append("the trace has no kernel symbol table: drop and free locations are addresses")
        if "net_dev_xmit" not in self.event_classes and not self.exported:
            out.append("no net_dev_xmit events: transmit rates are not known")
        if self.skipped["net_napi_gro_receive_entry"]:
            out.append("GRO merge shares are not computed: LTTng's net_napi_gro_receive_entry names no device")
        if sum(self.lost_by_cpu.values()):
            out.append("events lost: LTTng discarded events in the channel buffers (any kind of event, "
                       "not only network ones)")
        if self.lost_packets:
            out.append(f"{self.lost_packets} packets lost whole: each counts as one lost event, "
                       f"the true number is higher")
        return out

    def napi_polls(self) -> dict[str, int]:
        return {dev: n for (name, dev), n in sorted(self.counts.items()) if name == "napi_poll"}


def analyze_ctf(trace: CtfTrace) -> TraceAnalysis:
    """Run vnetdiag's tracing analyses on a CTF trace.

    The analyses place devices with the device map, which the LTTng statedump
    fills at the start of the trace: events are held until lttng_statedump_end
    (or the end of the trace), then streamed in bounded batches.
    """
    from vnetdiag.analyze.trace import TraceAnalyzer

    held: list[list[ev.TraceEvent]] = []
    analyzer = None
    for batch in trace.batches():
        if analyzer is None and not trace.statedump_done:
            held.append(batch)
            continue
        if analyzer is None:
            analyzer = TraceAnalyzer(dict(trace.devmap))
            for b in held:
                analyzer.feed(b)
            held.clear()
        analyzer.feed(batch)
    if analyzer is None:
        analyzer = TraceAnalyzer(dict(trace.devmap))
        for b in held:
            analyzer.feed(b)
    return analyzer.result(trace.duration_s, trace.completeness())
